"""D2SAC and LAD as RLlib algorithms, and the RLlib PPO/DQN/SAC baselines: registered by name.

The schedule lives here (CleanRL order: act, step, store, update, log), split RLlib's way:

- `EdgeDecisionRunner` (an RLlib `EnvRunner`): steps the scenario's vectorised NumPy core
  (B copies at once) with the module's exploration forward pass; writes LAD's historical action
  probability store after every decision; returns flat transitions (obs, action, reward,
  next_obs, done, agent, prior, next_prior) instead of Episode objects. In a multi-agent form
  a transition links an agent's decision to that same agent's next decision (each base station
  is its own independent learner, as in LAD-TS). Scales with `num_env_runners` (each runner its
  own copies and its own LAD store) and `num_envs_per_env_runner`.
- `TransitionReplay`: per-agent circular NumPy buffers (no Episode objects, no connectors).
- `DiffusionSAC.training_step`: sample, store, then ONE `learner_group.update` call per
  iteration carrying k minibatches (k = decisions sampled / `decisions_per_update`), so RLlib's
  per-call overhead is paid once per iteration instead of once per SGD step.

Names: `d2sac` (chain from N(0, I)), `lad` (chain from the historical probability), `sac-mlp`
(the same discrete SAC with an MLP actor: the ablation that isolates the diffusion actor), and
RLlib's own `ppo`, `dqn`, `sac` (MLP models, RLlib's stock pipelines on the gymnasium vector env).
"""
from __future__ import annotations

import difflib
import inspect
import time
from collections import Counter
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import ray
import torch

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.env_runner import EnvRunner
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME, WEIGHTS_SEQ_NO

from envs.config import ConfigError
from envs.scenarios import load_scenario, make_core
from policies.learners import DiffusionSACLearner
from policies.reference_rules import demo_policy
from policies.rllib_modules import AGENT, DEFAULT_MODEL_CONFIG, DEMO, NEXT_PRIOR, PRIOR, DiffusionSACModule

INPUT_ENV_SPACES = "__env__"
INPUT_ENV_SINGLE_SPACES = "__env_single__"
# SGD steps per learner_group.update call: bounds the rows one call holds (a pre-training's many).
UPDATES_PER_CALL = 256


# ---- scenarios ---------------------------------------------------------------------------------
def uses_agents(config) -> bool:
    """Whether the scenario runs one independent agent per base station (the faithful form)."""
    return getattr(config, "form", "shared") == "multi-agent"


class LadKeys:
    """Which decision contexts share a LAD store entry.

    `faithful` (the public code): (slot, BS, position), the core's `context_key`.
    `no-slot` (ours, dedgeai): (BS, position) only, so a context recurs ~59 times per episode
    instead of once and its stored probability is refreshed 59x as often.
    """

    def __init__(self, core, keying: str = "faithful"):
        self.keying = keying
        if keying == "faithful":
            self.size, self.modulo = core.num_context_keys, None
        elif keying == "no-slot":
            cfg = getattr(core, "config", None)
            if getattr(cfg, "scenario", None) != "dedgeai":
                raise ValueError("lad_keying=no-slot is defined for dedgeai only")
            self.size = self.modulo = cfg.n_bs * cfg.max_tasks
        else:
            raise ValueError(f"unknown lad_keying {keying!r}: faithful | no-slot")

    def __call__(self, core) -> np.ndarray:
        key = core.context_key()
        return key if self.modulo is None else key % self.modulo


# ---- the env runner ----------------------------------------------------------------------------
# The runner's per-copy sampling state, saved with every checkpoint (`sampler_state`).
SAMPLER_ARRAYS = ("p_obs", "p_act", "p_rew", "p_prior", "p_open", "p_index", "p_demo", "ep_delay",
                  "ep_reward", "ep_len", "active", "ep_start")
TRANSITION_KEYS = ("obs", "act", "rew", "next_obs", "done", "agent", "prior", "next_prior", "demo")


class EdgeDecisionRunner(EnvRunner, Checkpointable):
    """Samples transitions from B copies of the vectorised core with the module's exploration pass."""

    def __init__(self, *, config: AlgorithmConfig, **kwargs):
        super().__init__(config=config, **kwargs)
        env_config = dict(self.config.env_config)
        self.scenario = load_scenario(env_config["scenario"], env_config.get("overrides", ()))
        seed = env_config.get("seed")
        index = self.worker_index or 0
        seed = None if seed is None else int(seed) + 7919 * index
        torch.manual_seed(0 if seed is None else seed)
        self.core = make_core(self.scenario, self.config.num_envs_per_env_runner, seed)
        self.rng = np.random.default_rng(seed)
        self.n_agents = self.core.num_agents if uses_agents(self.scenario) else 1
        self.obs_space = gym.spaces.Box(-np.inf, np.inf, (self.core.layout.dim,), np.float32)
        self.act_space = gym.spaces.Discrete(self.core.encoding.n)
        self.module = self.config.get_rl_module_spec(spaces=self.get_spaces(), inference_only=True).build()
        # The module's own _forward_exploration (sample() already runs under no_grad): RLlib's
        # public forward_exploration toggles eval()/train() over the whole module tree on every
        # call: 6-10% of the sampling time here (benchmarks/agents/sampling_speed.py).
        self.explore = self.module._forward_exploration
        self.lad = self.module.cfg["start"] == "prior"
        A, B, E, d = self.act_space.n, self.core.num_envs, self.n_agents, self.core.layout.dim
        # LAD's historical action probability per decision context, persisted across episodes.
        self.keys = LadKeys(self.core, self.module.cfg.get("lad_keying", "faithful"))
        self.store = np.full((self.keys.size if self.lad else 1, A), 1.0 / A, np.float32)
        # The open transition of every (copy, agent): closed by that agent's next decision.
        self.p_obs = np.zeros((B, E, d), np.float32)
        self.p_act = np.zeros((B, E), np.int64)
        self.p_rew = np.zeros((B, E), np.float32)
        self.p_prior = np.zeros((B, E, A), np.float32)
        self.p_open = np.zeros((B, E), bool)
        self.p_index = np.zeros((B, E), np.int64)     # its decision's number within the episode
        self.p_demo = np.zeros((B, E), bool)          # taken by the demonstrator
        spec = getattr(self.config, "demo_policy", "")
        self.demonstrator = demo_policy(spec, self.scenario, seed) if spec else None
        # caused_share > 0: transitions wait here, per episode, until `caused_horizon` slots have
        # passed and the core can say what each decision cost the tasks after it.
        self.caused_share = float(getattr(self.config, "caused_share", 0.0))
        self.caused_horizon = int(getattr(self.config, "caused_horizon", 0))
        self.awaiting_credit: dict[int, list[dict]] = {}
        self.credited: dict[int, tuple[np.ndarray, int]] = {}   # episode -> (rewards, final count)
        if self.caused_share:
            self.core.record_placements()
        self.ep_delay = np.zeros(B)
        self.ep_reward = np.zeros(B)
        self.ep_len = np.zeros(B, np.int64)
        # Episodes are numbered by when they START (`start`, 1-based per runner): numbering them by
        # when they finish would put the longest (the most loaded, slowest) episodes of every
        # round of B copies last, biasing any "last k episodes" figure upwards. Once
        # `episode_budget` episodes have started, finished copies go idle instead of restarting.
        self.budget = getattr(self.config, "episode_budget", None)
        self.active = np.zeros(B, bool)
        self.ep_start = np.zeros(B, np.int64)
        self.started, self.next_start = 0, 1
        self.finished: list[dict] = []          # completed episodes since the last get_metrics
        self._weights_seq_no = 0
        # The core drew its first B episodes when built; every reset draws the next ones in row
        # order, so episode number k is the k-th the core's seeded stream produced (replayable:
        # policies/evaluation.py `on_runner_episodes` plays a heuristic on exactly these episodes).
        self._start(np.arange(B))

    # -- RLlib plumbing ---------------------------------------------------------------------------
    def assert_healthy(self):
        assert self.core is not None and self.module is not None

    def get_spaces(self):
        return {INPUT_ENV_SPACES: (self.obs_space, self.act_space),
                INPUT_ENV_SINGLE_SPACES: (self.obs_space, self.act_space),
                DEFAULT_MODULE_ID: (self.obs_space, self.act_space)}

    def get_metrics(self) -> list[dict]:
        out, self.finished = self.finished, []
        return out

    def get_state(self, components=None, *, not_components=None, **kwargs):
        state = {NUM_ENV_STEPS_SAMPLED_LIFETIME: self.num_env_steps_sampled_lifetime,
                 "lad_store": self.store}
        if self._check_component(COMPONENT_RL_MODULE, components, not_components):
            state[COMPONENT_RL_MODULE] = self.module.get_state()
            state[WEIGHTS_SEQ_NO] = self._weights_seq_no
        return state

    def set_state(self, state):
        if COMPONENT_RL_MODULE in state:
            seq = state.get(WEIGHTS_SEQ_NO, 0)
            if seq == 0 or self._weights_seq_no < seq:
                module_state = state[COMPONENT_RL_MODULE]
                if isinstance(module_state, ray.ObjectRef):   # RLlib broadcasts weights by reference
                    module_state = ray.get(module_state)
                if isinstance(module_state, dict) and DEFAULT_MODULE_ID in module_state:
                    module_state = module_state[DEFAULT_MODULE_ID]
                self.module.set_state(module_state)
            if seq > 0:
                self._weights_seq_no = seq
        if "lad_store" in state and np.shape(state["lad_store"]) == self.store.shape:
            self.store = np.array(state["lad_store"], np.float32)
        if NUM_ENV_STEPS_SAMPLED_LIFETIME in state:
            self.num_env_steps_sampled_lifetime = state[NUM_ENV_STEPS_SAMPLED_LIFETIME]

    def get_ctor_args_and_kwargs(self):
        return (), {"config": self.config}

    def get_checkpointable_components(self):
        return [(COMPONENT_RL_MODULE, self.module)]

    def sampler_state(self) -> dict:
        """Where this runner is in its episodes: the core's snapshot, the open transitions, the
        episode counters and its own LAD store (the replay data itself is not saved)."""
        return {"num_envs": self.core.num_envs, "core": self.core.get_state(), "lad_store": self.store.copy(),
                "rng": self.rng.bit_generator.state, "started": self.started, "next_start": self.next_start,
                **{name: getattr(self, name).copy() for name in SAMPLER_ARRAYS}}

    def resume(self, state: dict | None, done: int, next_start: int) -> None:
        """Continue the episodes in flight from `sampler_state()`, so episode k stays the k-th
        the seeded core draws (and runs stay comparable episode by episode with a heuristic).
        Without a snapshot that fits (an older checkpoint, another num_envs), start afresh."""
        if state is not None and np.shape(state.get("lad_store")) == self.store.shape:
            self.store[...] = state["lad_store"]
        if state is None or state["num_envs"] != self.core.num_envs:
            self.restart_episodes(done, next_start)
            return
        self.core.set_state(state["core"])
        self.rng.bit_generator.state = state["rng"]
        self.started, self.next_start = state["started"], state["next_start"]
        for name in SAMPLER_ARRAYS:
            if name in state:           # p_index came later; without it nothing is awaiting credit
                getattr(self, name)[...] = state[name]
        # Transitions awaiting credit are replay data, which checkpoints do not keep.
        self.awaiting_credit, self.credited = {}, {}
        self.finished = []
        idle = np.flatnonzero(~self.active)     # a resume may raise the budget: idle copies go on
        if idle.size:
            self.core.reset(self._start(idle))

    def restart_episodes(self, done: int, next_start: int) -> None:
        """Start every copy afresh: `done` episodes of this runner already finished (the ones in
        flight are dropped), and the next episode to start is numbered `next_start`. In a freshly
        built runner the new episodes replay its core's seeded stream from the start."""
        self.core.reset()
        self.p_open[:] = False
        self.ep_delay[:], self.ep_reward[:], self.ep_len[:] = 0.0, 0.0, 0
        self.started, self.next_start = done, next_start
        self.active[:] = False
        self._start(np.arange(self.core.num_envs))

    def _start(self, rows: np.ndarray) -> np.ndarray:
        """Number and activate as many of `rows` as the budget allows; -> the [B] mask started."""
        mask = np.zeros(self.core.num_envs, bool)
        room = len(rows) if self.budget is None else max(0, min(len(rows), self.budget - self.started))
        rows = rows[:room]
        mask[rows] = True
        self.active[rows] = True
        self.ep_start[rows] = self.next_start + np.arange(room)
        self.started += room
        self.next_start += room
        return mask

    # -- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_timesteps: int | None = None, random_actions: bool = False,
               demo_actions: bool = False, **kwargs) -> dict:
        """At least `num_timesteps` decisions over all copies -> flat transition arrays. The
        actions are uniform (`random_actions`), the demonstrator's (`demo_actions`: the
        transitions say so) or the module's samples."""
        if demo_actions and self.demonstrator is None:
            raise ValueError("demo_actions needs training.demo_policy")
        core, B, E = self.core, self.core.num_envs, self.n_agents
        rows = np.arange(B)
        target = num_timesteps or self.config.rollout_decisions
        out: dict[str, list] = {k: [] for k in TRANSITION_KEYS + ("episode", "index")}
        decided = 0

        def close(r: np.ndarray, a: np.ndarray, next_obs: np.ndarray, next_prior: np.ndarray, done: bool):
            out["obs"].append(self.p_obs[r, a]); out["act"].append(self.p_act[r, a])
            out["rew"].append(self.p_rew[r, a]); out["next_obs"].append(next_obs)
            out["done"].append(np.full(r.size, done)); out["agent"].append(a)
            out["prior"].append(self.p_prior[r, a]); out["next_prior"].append(next_prior)
            out["episode"].append(self.ep_start[r]); out["index"].append(self.p_index[r, a])
            out["demo"].append(self.p_demo[r, a])
            self.p_open[r, a] = False

        while decided < target and self.active.any():
            live = rows if self.active.all() else rows[self.active]
            observed = core.observe()
            obs = observed[live]
            agent = core.acting_agent()[live] if E > 1 else np.zeros(live.size, np.int64)
            key = self.keys(core)[live] if self.lad else np.zeros(live.size, np.int64)
            prior = self.store[key]
            was_open = self.p_open[live, agent]
            if was_open.any():
                close(live[was_open], agent[was_open], obs[was_open], prior[was_open], False)
            # The module acts, or (LAD) sees the demonstrator's decisions to keep its store.
            if random_actions:
                logits = np.zeros((live.size, self.act_space.n), np.float32)
            elif not demo_actions or self.lad:
                batch = {Columns.OBS: torch.from_numpy(obs), AGENT: torch.from_numpy(agent),
                         PRIOR: torch.from_numpy(prior)}
                logits = self.explore(batch)[Columns.ACTION_DIST_INPUTS].numpy()
            if demo_actions:
                actions = self.demonstrator.decide(observed, core.network_state())[live]
            else:
                # Sample from softmax(logits) with the Gumbel-max trick.
                actions = (logits - np.log(-np.log(self.rng.random(logits.shape)))).argmax(1)
            # LAD stores the policy's own probabilities, also while a demonstrator acts.
            if self.lad:
                z = np.exp(logits - logits.max(1, keepdims=True))
                self.store[key] = z / z.sum(1, keepdims=True)
            full = np.zeros(B, np.int64)
            full[live] = actions
            result = core.step(full, None if live.size == B else self.active)
            self.p_obs[live, agent] = obs
            self.p_act[live, agent] = actions
            self.p_rew[live, agent] = result.reward[live]
            self.p_prior[live, agent] = prior
            self.p_open[live, agent] = True
            self.p_index[live, agent] = self.ep_len[live]
            self.p_demo[live, agent] = demo_actions
            self.ep_delay[live] += result.delay_s[live]
            self.ep_reward[live] += result.reward[live]
            self.ep_len[live] += 1
            decided += live.size
            ended = live[result.done[live]]
            if ended.size:
                for r in ended:
                    open_agents = np.flatnonzero(self.p_open[r])
                    rr = np.full(open_agents.size, r)
                    close(rr, open_agents, self.p_obs[rr, open_agents], self.p_prior[rr, open_agents], True)
                    if self.caused_share:
                        self.credited[int(self.ep_start[r])] = self._credit(r)
                    self.finished.append({"mean_delay_s": self.ep_delay[r] / self.ep_len[r],
                                          "mean_reward": self.ep_reward[r] / self.ep_len[r],
                                          "return": self.ep_reward[r], "decisions": int(self.ep_len[r]),
                                          "worker": int(self.worker_index or 0),
                                          "start": int(self.ep_start[r])})
                self.active[ended] = False
                self.ep_delay[ended], self.ep_reward[ended], self.ep_len[ended] = 0.0, 0.0, 0
                core.reset(self._start(ended))
        self.num_env_steps_sampled_lifetime += decided
        cat = {k: np.concatenate(v) for k, v in out.items() if v}
        if self.caused_share and cat:
            cat = self._apply_credit(cat)
        cat["decisions"] = decided
        return cat

    def _credit(self, row: int) -> tuple[np.ndarray, int]:
        final = self.core.final_decisions(row, self.caused_horizon)
        return self.core.credited_rewards(row, self.caused_share, self.caused_horizon), final

    def _apply_credit(self, closed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Park `closed` by episode; -> every parked transition whose credit is now final."""
        episode = closed["episode"]
        for ep in np.unique(episode):
            mine = episode == ep
            self.awaiting_credit.setdefault(int(ep), []).append({k: v[mine] for k, v in closed.items()})
        for r in np.flatnonzero(self.active):      # episodes under way: their first slots are final
            ep, final = int(self.ep_start[r]), self.core.final_decisions(r, self.caused_horizon)
            parked = self.awaiting_credit.get(ep)
            # Re-credit only when a parked transition has become final (a slot has closed).
            if parked and any((c["index"] < final).any() for c in parked):
                self.credited[ep] = self._credit(r)
        parts = []
        for ep, (rewards, exact) in self.credited.items():
            chunks = self.awaiting_credit.pop(ep, None)
            if not chunks:
                continue
            waiting = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
            final = waiting["index"] < exact
            if not final.all():
                self.awaiting_credit[ep] = [{k: v[~final] for k, v in waiting.items()}]
            part = {k: v[final] for k, v in waiting.items()}
            part["rew"] = rewards[part["index"]].astype(np.float32)
            parts.append(part)
        self.credited = {}
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def stop(self):
        self.core = None


# ---- replay ------------------------------------------------------------------------------------
class TransitionReplay:
    """Per-agent circular buffers; `sample(m)` returns E*m rows grouped by agent (agent-major)."""

    def __init__(self, n_agents: int, capacity_per_agent: int, obs_dim: int, n_actions: int,
                 seed: int | None = None, with_prior: bool = False):
        E, C = n_agents, capacity_per_agent
        self.E, self.C = E, C
        self.obs = np.zeros((E, C, obs_dim), np.float32)
        self.next_obs = np.zeros((E, C, obs_dim), np.float32)
        self.act = np.zeros((E, C), np.int64)
        self.rew = np.zeros((E, C), np.float32)
        self.done = np.zeros((E, C), np.float32)
        self.demo = np.zeros((E, C), np.float32)
        self.with_prior = with_prior
        if with_prior:
            self.prior = np.zeros((E, C, n_actions), np.float32)
            self.next_prior = np.zeros((E, C, n_actions), np.float32)
        self.pos = np.zeros(E, np.int64)
        self.size = np.zeros(E, np.int64)
        self.rng = np.random.default_rng(seed)

    def add(self, data: dict) -> None:
        agent = data["agent"]
        order = np.argsort(agent, kind="stable")
        counts = np.bincount(agent, minlength=self.E)
        start = 0
        for e in np.flatnonzero(counts):
            idx = order[start:start + counts[e]]
            start += counts[e]
            idx = idx[-self.C:]
            slots = (self.pos[e] + np.arange(idx.size)) % self.C
            self.obs[e, slots] = data["obs"][idx]
            self.next_obs[e, slots] = data["next_obs"][idx]
            self.act[e, slots] = data["act"][idx]
            self.rew[e, slots] = data["rew"][idx]
            self.done[e, slots] = data["done"][idx]
            self.demo[e, slots] = data["demo"][idx]
            if self.with_prior:
                self.prior[e, slots] = data["prior"][idx]
                self.next_prior[e, slots] = data["next_prior"][idx]
            self.pos[e] = (self.pos[e] + idx.size) % self.C
            self.size[e] = min(self.size[e] + idx.size, self.C)

    def ready(self, m: int) -> bool:
        return bool((self.size >= min(m, self.C)).all())

    def sample(self, m: int, k: int = 1, kept: "TransitionReplay | None" = None,
               kept_share: float = 0.0) -> dict[str, np.ndarray]:
        """k minibatches of E*m rows each, concatenated; each minibatch grouped by agent. With
        `kept` (demonstrations kept apart), `kept_share` of every agent's rows come from it (all
        of them while this buffer is not ready yet)."""
        if kept is None or not kept.ready(m):      # none kept, or lost: replay is not checkpointed
            from_kept = 0
        else:
            from_kept = m if not self.ready(m) else round(kept_share * m)
        parts = [r._draw(n, k) for r, n in ((kept, from_kept), (self, m - from_kept)) if n]
        return {key: np.concatenate([p[key] for p in parts], axis=2).reshape(k * self.E * m, *parts[0][key].shape[3:])
                for key in parts[0]}

    def _draw(self, m: int, k: int) -> dict[str, np.ndarray]:
        """Uniform rows, [k, E, m, ...]: m of every agent's for each of k minibatches."""
        idx = (self.rng.random((k, self.E, m)) * self.size[None, :, None]).astype(np.int64)
        e = np.broadcast_to(np.arange(self.E)[None, :, None], idx.shape)
        batch = {Columns.OBS: self.obs[e, idx], Columns.NEXT_OBS: self.next_obs[e, idx],
                 Columns.ACTIONS: self.act[e, idx], Columns.REWARDS: self.rew[e, idx],
                 Columns.TERMINATEDS: self.done[e, idx], DEMO: self.demo[e, idx], AGENT: e.copy()}
        if self.with_prior:
            batch[PRIOR] = self.prior[e, idx]
            batch[NEXT_PRIOR] = self.next_prior[e, idx]
        return batch


# ---- config and algorithm ----------------------------------------------------------------------
class DiffusionSACConfig(AlgorithmConfig):
    """Discrete SAC with a diffusion (or MLP) actor over the vectorised edge simulator."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DiffusionSAC)
        self.env_runner_cls = EdgeDecisionRunner
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 10
        # -- SAC (CleanRL names where they exist)
        self.gamma = 0.5
        self.tau = 0.005
        self.grad_clip = 10.0
        self.grad_clip_by = "global_norm"
        self.actor_lr = 1e-3
        self.critic_lr = 1e-3
        self.alpha_lr = 3e-3
        self.target_entropy_scale = 0.65     # target entropy = scale * log|A| (spreading load needs entropy)
        self.reward_scale = 0.1
        # -- schedule
        self.rollout_decisions = 4096        # decisions sampled per iteration (over all copies)
        self.decisions_per_update = 256      # one SGD step per this many decisions sampled
        self.minibatch_per_agent = 256       # rows per agent per SGD step
        self.replay_capacity = 200_000       # per agent
        self.learning_starts = 4096          # decisions before the first update
        self.random_decisions = 0            # uniform-random decisions at the start
        # Demonstrations (DQfD's idea, Hester et al. 2018, in SAC's actor): the first
        # `demo_decisions` decisions are taken by `demo_policy` (policies/reference_rules.py:
        # `size-split:THETA[:COVER]` or a heuristic's name); on every replayed demonstration the
        # actor's loss is `bc_weight` x the cross-entropy to the demonstrated action instead of
        # SAC's, while the critics learn from every transition alike.
        self.demo_policy = ""
        self.demo_decisions = 0
        self.demo_pretrain_updates = 0       # SGD steps on the demonstrations alone, once, after them
        self.demo_batch_share = 0.0          # > 0: demonstrations kept apart all run, this share of a batch
        self.demo_cql_weight = 0.0           # > 0: a conservative (CQL) critic term on demonstrations
        self.bc_weight = 1.0
        # 0: a decision's reward is its task's -delay. s in (0, 1] (dedgeai): the same total per
        # episode, but a share s of every wait behind a task placed at most `caused_horizon` slots
        # earlier is charged to the decision that placed it instead of the one that suffered it
        # (envs/dedgeai.py, `caused_wait`); a transition reaches the learner that many slots late.
        self.caused_share = 0.0
        self.caused_horizon = 2
        self.episode_budget = None           # per runner: episodes to start, then idle (None: no end)
        # -- model
        self.model_overrides: dict[str, Any] = {}
        self.actor_kind = "diffusion"
        self.start = "noise"

    # The options this config adds to AlgorithmConfig.training(), and the range of each number.
    OWN_TRAINING = ("actor_lr", "critic_lr", "alpha_lr", "target_entropy_scale", "reward_scale", "tau",
                    "rollout_decisions", "decisions_per_update", "minibatch_per_agent", "replay_capacity",
                    "learning_starts", "random_decisions", "model_overrides", "actor_kind", "start",
                    "episode_budget", "caused_share", "caused_horizon", "demo_policy", "demo_decisions",
                    "demo_pretrain_updates", "demo_batch_share", "demo_cql_weight", "bc_weight")
    POSITIVE = ("actor_lr", "critic_lr", "alpha_lr", "reward_scale")
    UNIT_INTERVAL = ("gamma", "tau", "target_entropy_scale", "caused_share")
    AT_LEAST = {"rollout_decisions": 1, "decisions_per_update": 1, "minibatch_per_agent": 1,
                "replay_capacity": 1, "learning_starts": 0, "random_decisions": 0, "caused_horizon": 0,
                "demo_decisions": 0, "demo_pretrain_updates": 0}

    def training(self, **kwargs):
        own = {k: kwargs.pop(k) for k in list(kwargs) if k in self.OWN_TRAINING}
        for k, v in own.items():
            setattr(self, k, v)
        return super().training(**kwargs)

    def model_config_for(self, scenario_cfg, obs_scale: np.ndarray, n_agents: int) -> dict:
        return {"actor": self.actor_kind, "start": self.start, "n_agents": n_agents,
                "obs_scale": [float(x) for x in obs_scale], **self.model_overrides}

    def get_default_rl_module_spec(self):
        return RLModuleSpec(module_class=DiffusionSACModule)

    def get_default_learner_class(self):
        return DiffusionSACLearner

    def validate(self) -> None:
        # The stock validation expects an env; ours is built by the runner from env_config.
        if "scenario" not in self.env_config:
            raise ConfigError("env_config needs `scenario`")
        def number(value, types=(int, float)) -> bool:
            return isinstance(value, types) and not isinstance(value, bool)

        for key in self.POSITIVE:
            if not (number(getattr(self, key)) and getattr(self, key) > 0):
                raise ConfigError(f"training.{key} must be a number > 0, got {getattr(self, key)!r}")
        for key in self.UNIT_INTERVAL:
            if not (number(getattr(self, key)) and 0 <= getattr(self, key) <= 1):
                raise ConfigError(f"training.{key} must be a number in [0, 1], got {getattr(self, key)!r}")
        for key, low in self.AT_LEAST.items():
            if not (number(getattr(self, key), int) and getattr(self, key) >= low):
                raise ConfigError(f"training.{key} must be an integer >= {low}, got {getattr(self, key)!r}")
        for key in ("bc_weight", "demo_cql_weight"):
            if not (number(getattr(self, key)) and getattr(self, key) >= 0):
                raise ConfigError(f"training.{key} must be a number >= 0, got {getattr(self, key)!r}")
        if not isinstance(self.demo_policy, str):
            raise ConfigError(f"training.demo_policy must be a string, got {self.demo_policy!r}")
        if not (number(self.demo_batch_share) and 0 <= self.demo_batch_share < 1):
            raise ConfigError(f"training.demo_batch_share must be a number in [0, 1), got {self.demo_batch_share!r}")
        for key in ("demo_batch_share", "demo_cql_weight"):
            if getattr(self, key) and not self.demo_decisions:
                raise ConfigError(f"training.{key} > 0 needs training.demo_decisions > 0 (demonstrations)")
        if self.demo_decisions and not self.demo_policy:
            raise ConfigError("training.demo_decisions > 0 needs training.demo_policy (who demonstrates)")
        if self.demo_decisions and self.random_decisions:
            raise ConfigError("training.demo_decisions and training.random_decisions both choose the first "
                              "actions: set one of them to 0")


class DiffusionSAC(Algorithm):
    @classmethod
    def get_default_config(cls) -> DiffusionSACConfig:
        return DiffusionSACConfig()

    def setup(self, config):
        super().setup(config)
        cfg = self.config
        runner = self.env_runner_group.local_env_runner
        n_agents, obs_dim, n_actions = self._remote_or_local(
            lambda r: (r.n_agents, r.obs_space.shape[0], r.act_space.n))
        self.n_agents = n_agents
        self.replay = TransitionReplay(n_agents, cfg.replay_capacity, obs_dim, n_actions,
                                       seed=cfg.seed, with_prior=cfg.start == "prior")
        # DQfD keeps its demonstrations for the whole run: here apart, a fixed share of every batch.
        self.kept_demos = None
        if cfg.demo_decisions and cfg.demo_batch_share:
            # Agents decide about equally often: twice an agent's share leaves room for the spread.
            per_agent = cfg.demo_decisions if n_agents == 1 else -(-2 * cfg.demo_decisions // n_agents)
            self.kept_demos = TransitionReplay(n_agents, per_agent, obs_dim, n_actions,
                                               seed=None if cfg.seed is None else cfg.seed + 1,
                                               with_prior=cfg.start == "prior")
        self.episodes: list[dict] = []        # every completed episode, in order (all copies)
        self.decisions = 0
        self.sgd_steps = 0
        self._owed_updates = 0.0
        self.demo_pretrained = False
        del runner

    def _on_sampling_runners(self, fn: Callable) -> list:
        """`fn` on the runners that sample: the remote ones, or the local one when there are none."""
        group = self.env_runner_group
        return group.foreach_env_runner(fn, local_env_runner=group.num_remote_env_runners() == 0)

    def _remote_or_local(self, fn: Callable):
        return self._on_sampling_runners(fn)[0]

    def lad_store(self) -> np.ndarray:
        """LAD's historical action probabilities: every sampling runner keeps its own (its own
        episodes); the policy artifact gets their mean, still a probability per context."""
        stores = self._on_sampling_runners(lambda r: r.store)
        return stores[0] if len(stores) == 1 else np.mean(stores, axis=0).astype(np.float32)

    def training_step(self) -> None:
        cfg, group = self.config, self.env_runner_group
        per_runner = max(1, cfg.rollout_decisions // max(1, group.num_remote_env_runners() or 1))
        randomly = self.decisions < cfg.random_decisions
        demo = self.decisions < cfg.demo_decisions
        t0 = time.perf_counter()
        samples = self._on_sampling_runners(
            lambda r: (r.sample(num_timesteps=per_runner, random_actions=randomly, demo_actions=demo),
                       r.get_metrics()))
        sample_s = time.perf_counter() - t0
        new = 0
        for data, finished in samples:
            if "agent" in data:
                self._store(data)
            new += data["decisions"]
            for ep in finished:
                ep["decisions_total"] = self.decisions + new
                self.episodes.append(ep)
        self.decisions += new
        self._number_episodes()

        learn_s, learner_results = 0.0, None
        m = cfg.minibatch_per_agent
        if self.decisions >= cfg.learning_starts and (self.replay.ready(m) or self._kept_ready(m)):
            self._owed_updates += new / cfg.decisions_per_update
            k = int(self._owed_updates)
            self._owed_updates -= k
            if cfg.demo_decisions and not self.demo_pretrained and self.decisions >= cfg.demo_decisions:
                # DQfD's pre-training: the demonstrations alone, before the agent first acts.
                k += cfg.demo_pretrain_updates
                self.demo_pretrained = True
            if k > 0:
                t1 = time.perf_counter()
                learner_results = self._update(k)
                group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)
                learn_s = time.perf_counter() - t1
        if learner_results is not None:
            self.metrics.aggregate(learner_results, key="learners")
        recent = [e["mean_delay_s"] for e in self.episodes[-10:]]
        self.metrics.log_dict({
            "edge/episodes": len(self.episodes), "edge/decisions": self.decisions,
            "edge/sgd_steps": self.sgd_steps, "edge/sample_s": sample_s, "edge/learn_s": learn_s,
            "edge/mean_delay_last10_s": float(np.mean(recent)) if recent else float("nan"),
            "edge/mean_return_last10": float(np.mean([e["return"] for e in self.episodes[-10:]]))
            if recent else float("nan"),
        }, window=1)

    def _store(self, data: dict) -> None:
        """Into the replay buffer; demonstrations into their own when they are kept apart."""
        if self.kept_demos is None or not data["demo"].any():
            self.replay.add(data)
            return
        for buffer, rows in ((self.kept_demos, data["demo"]), (self.replay, ~data["demo"])):
            if rows.any():
                buffer.add({k: v[rows] for k, v in data.items() if isinstance(v, np.ndarray)})

    def _kept_ready(self, m: int) -> bool:
        return self.kept_demos is not None and self.kept_demos.ready(m)

    def _update(self, k: int):
        """k SGD steps on replayed minibatches, in calls of at most UPDATES_PER_CALL steps."""
        m, rows = self.config.minibatch_per_agent, self.n_agents * self.config.minibatch_per_agent
        results = None
        for chunk in range(0, k, UPDATES_PER_CALL):
            n = min(UPDATES_PER_CALL, k - chunk)
            rows_of = self.replay.sample(m, n, self.kept_demos, self.config.demo_batch_share)
            batch = MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(rows_of)}, env_steps=n * rows)
            results = self.learner_group.update(
                batch=batch, minibatch_size=rows, num_epochs=1, shuffle_batch_per_epoch=False,
                timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: self.decisions})
            self.sgd_steps += n
        return results

    def _number_episodes(self) -> None:
        """Keep `episodes` in the order the episodes started (ties across runners by worker)."""
        self.episodes.sort(key=lambda e: (e.get("start", 0), e.get("worker", 0)))
        for i, ep in enumerate(self.episodes):
            ep["episode"] = i + 1

    # -- checkpoint: the episode log and counters travel with the RLlib checkpoint -----------------
    def get_state(self, components=None, *, not_components=None, **kwargs):
        state = super().get_state(components, not_components=not_components, **kwargs)
        samplers = dict(self._on_sampling_runners(lambda r: (r.worker_index or 0, r.sampler_state())))
        state["edge"] = {"episodes": list(self.episodes), "decisions": self.decisions,
                         "sgd_steps": self.sgd_steps, "demo_pretrained": self.demo_pretrained,
                         "lad_store": self.lad_store(),
                         "samplers": samplers}
        return state

    def set_state(self, state):
        super().set_state(state)
        edge = state.get("edge")
        if edge:
            self.episodes = list(edge["episodes"])
            self.decisions = int(edge["decisions"])
            self.sgd_steps = int(edge["sgd_steps"])
            self.demo_pretrained = bool(edge.get("demo_pretrained", False))
            store = edge["lad_store"]
            self.env_runner_group.foreach_env_runner(lambda r: r.set_state({"lad_store": store}),
                                                     local_env_runner=True)
            # Every runner continues its episodes in flight with its own store; one without a
            # snapshot (a checkpoint from before snapshots) starts afresh with the mean store,
            # numbering on from its own finished episodes.
            runs: dict[int, list[int]] = {}
            for ep in self.episodes:
                runs.setdefault(ep.get("worker", 0), []).append(ep.get("start", 0))
            samplers = edge.get("samplers", {})
            self.env_runner_group.foreach_env_runner(
                lambda r: r.resume(samplers.get(r.worker_index or 0),
                                   done=len(runs.get(r.worker_index or 0, [])),
                                   next_start=max(runs.get(r.worker_index or 0, [0])) + 1),
                local_env_runner=True)


# ---- registry ----------------------------------------------------------------------------------
DIFFUSION_ALGOS = {"d2sac": ("diffusion", "noise"), "lad": ("diffusion", "prior"), "sac-mlp": ("mlp", "noise")}
RLLIB_ALGOS = ("ppo", "dqn", "sac")
ALGOS = tuple(DIFFUSION_ALGOS) + RLLIB_ALGOS


def training_options(config_class: type) -> set[str]:
    """The keyword options `config_class().training()` accepts (its own and every base's)."""
    names = set(getattr(config_class, "OWN_TRAINING", ()))
    for cls in config_class.__mro__:
        if "training" in cls.__dict__:
            names |= {p.name for p in inspect.signature(cls.__dict__["training"]).parameters.values()
                      if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return names


def check_training_options(algo: str, config_class: type, training: dict) -> None:
    known = training_options(config_class)
    for key in training:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ConfigError(f"training.{key} is not a training option of {algo}{hint}; "
                              f"options: {', '.join(sorted(known))}")


# Model options a user may set (`model:` in the train config); the rest are set from the scenario.
USER_MODEL_OPTIONS = tuple(k for k in DEFAULT_MODEL_CONFIG if k not in ("n_agents", "obs_scale", "per_action_columns"))
NETWORKS = ("flat", "per-action")


def checked_model(model: dict, layout, n_agents: int, n_actions: int) -> dict:
    """The `model` overrides, checked; with network 'per-action', the layout's columns added."""
    for key in model:
        if key not in USER_MODEL_OPTIONS:
            raise ConfigError(f"model.{key} is not a model option; options: {', '.join(USER_MODEL_OPTIONS)}")
    network = model.get("network", "flat")
    if network not in NETWORKS:
        raise ConfigError(f"model.network must be one of {', '.join(NETWORKS)}, got {network!r}")
    if network == "flat":
        return dict(model)
    columns = layout.per_action_columns()
    if not columns:
        raise ConfigError(f"model.network 'per-action' needs per-action observation fields; the "
                          f"{layout.scenario} layout has none (it scores actions that are not one per field column)")
    sizes = sorted({len(c) for c in columns})
    if sizes != [n_actions]:
        raise ConfigError(f"model.network 'per-action' needs one column per action in every per-action field; "
                          f"the {layout.scenario} layout's fields have {sizes}, the scenario {n_actions} actions")
    if n_agents != 1:
        raise ConfigError("model.network 'per-action' shares one weight set: it needs the shared form "
                          f"(this scenario has {n_agents} independent agents)")
    return {**model, "per_action_columns": columns}


def algorithm_config(algo: str, env_config: dict, *, num_envs: int = 10, num_env_runners: int = 0,
                     seed: int | None = None, training: dict | None = None, model: dict | None = None):
    """The AlgorithmConfig of `algo` on the scenario of `env_config` (scenario, overrides, seed)."""
    training = dict(training or {})
    scen = load_scenario(env_config["scenario"], env_config.get("overrides", ()))
    if algo in DIFFUSION_ALGOS:
        check_training_options(algo, DiffusionSACConfig, training)
        core = make_core(scen, 1, 0)
        actor, start = DIFFUSION_ALGOS[algo]
        n_agents = core.num_agents if uses_agents(scen) else 1
        cfg = (DiffusionSACConfig()
               .environment(env_config=dict(env_config))
               .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs,
                            num_cpus_per_env_runner=0.5)
               .learners(num_learners=0)
               .debugging(seed=seed)
               .training(actor_kind=actor, start=start, **training))
        cfg.validate()
        if cfg.demo_policy:
            demo_policy(cfg.demo_policy, scen)        # a bad spec fails here, not in a runner
        if cfg.caused_share:
            try:
                core.record_placements()
            except NotImplementedError as e:
                raise ConfigError(f"training.caused_share > 0 needs a scenario with hindsight credit: {e}") from e
        model_config = cfg.model_config_for(scen, core.layout.scales(), n_agents)
        model_config.update(checked_model(model or {}, core.layout, n_agents, core.encoding.n))
        return cfg.rl_module(rl_module_spec=RLModuleSpec(module_class=DiffusionSACModule,
                                                         model_config=model_config))
    if algo not in RLLIB_ALGOS:
        raise ValueError(f"unknown algo {algo!r}; choose one of {', '.join(ALGOS)}")
    core = make_core(scen, 1, 0)
    agents = core.num_agents if uses_agents(scen) else None
    return rllib_baseline_config(algo, env_config, num_envs=num_envs, num_env_runners=num_env_runners,
                                 seed=seed, training=training, agents=agents,
                                 episode_decisions=core.mean_episode_decisions())


# RLlib's DQN/SAC replay, in decisions (all policies together in the faithful form). RLlib's
# episode buffers take ~7 KB per stored decision here: a buffer holding a whole 60-episode run
# (1.8M decisions) does not fit in memory.
REPLAY_CAPACITY = 200_000
# The faithful form's buffer drops an episode it evicts while it still runs, with the rest of
# it (policies/rllib_replay.py): hold this many of every env's episodes so that it rarely does.
RUNNING_EPISODES_HELD = 1.5


def rllib_baseline_config(algo: str, env_config: dict, *, num_envs: int, num_env_runners: int,
                          seed: int | None, training: dict, agents: int | None = None,
                          episode_decisions: float = 0.0):
    """RLlib's own PPO / DQN / SAC with MLP models: one policy on the gymnasium vector env of the
    scenario, or (`agents`: the faithful form) one independent policy per base station on the
    turn-based MultiAgentEnv, `num_envs` of them per runner (`episode_decisions`: the mean
    decisions of an episode, which size that form's buffer)."""
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.algorithms.sac import SACConfig

    from ray.rllib.connectors.env_to_module.mean_std_filter import MeanStdFilter

    from envs.rllib_env import MULTI_AGENT_ENV, VECTOR_ENV, agent_id, register_rllib_envs
    from policies.rllib_replay import REPLACED_BUFFER, ResumableDQN, ResumableSAC, TurnBasedDQN, TurnBasedSAC

    register_rllib_envs()
    multi = agents is not None
    config_class = {"ppo": PPOConfig, "dqn": DQNConfig, "sac": SACConfig}[algo]
    check_training_options(algo, config_class, training)
    # RLlib's DQN and SAC, fixed to resume (both forms) and to evict on the turn-based env.
    replaying = {"dqn": (ResumableDQN, TurnBasedDQN), "sac": (ResumableSAC, TurnBasedSAC)}
    base = config_class(algo_class=replaying[algo][multi]) if algo in replaying else config_class()
    cfg = (base.environment(env=MULTI_AGENT_ENV if multi else VECTOR_ENV, env_config=dict(env_config))
           .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs,
                        num_cpus_per_env_runner=0.5,
                        # Queues grow to hundreds of Gcycles: standardise observations online.
                        env_to_module_connector=lambda env=None, spaces=None, device=None:
                        MeanStdFilter(multi_agent=multi))
           .learners(num_learners=0)
           .debugging(seed=seed))
    if multi:
        ids = [agent_id(i) for i in range(agents)]
        cfg = cfg.multi_agent(policies=set(ids), policy_mapping_fn=lambda aid, *args, **kwargs: aid)
    else:
        cfg = cfg.env_runners(gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT)
    # The multi-agent prioritized buffer has no default importance exponent (beta): give it the
    # single-agent buffer's. RLlib 2.60's breaks at its first eviction on the turn-based env;
    # the faithful form's DQN and SAC use a fixed subclass (policies/rllib_replay.py).
    replay = {"type": "PrioritizedEpisodeReplayBuffer", "capacity": REPLAY_CAPACITY}
    if multi:
        held = RUNNING_EPISODES_HELD * num_envs * max(num_env_runners, 1) * episode_decisions
        replay.update(type=REPLACED_BUFFER, alpha=1.0, beta=0.0, capacity=max(REPLAY_CAPACITY, int(held)))
    defaults = {
        "ppo": dict(lr=3e-4, gamma=0.5, train_batch_size_per_learner=4096, minibatch_size=512,
                    num_epochs=4, entropy_coeff=0.01, lambda_=0.9),
        "dqn": dict(lr=5e-4, gamma=0.5, train_batch_size_per_learner=256, n_step=1,
                    target_network_update_freq=2000, training_intensity=0.5,
                    replay_buffer_config=replay,
                    num_steps_sampled_before_learning_starts=4096, double_q=True, dueling=True),
        "sac": dict(actor_lr=3e-4, critic_lr=1e-3, alpha_lr=3e-4, gamma=0.5,
                    train_batch_size_per_learner=256, training_intensity=0.5,
                    replay_buffer_config=replay,
                    num_steps_sampled_before_learning_starts=4096, target_entropy="auto"),
    }[algo]
    defaults.update(training)
    cfg = cfg.training(**defaults)
    if algo in ("dqn", "sac"):
        # RLlib's default fragment (1 step per env per call) makes one train() per ~10 decisions:
        # its per-iteration overhead then dominates 1.8M decisions. 256 steps x envs per call.
        cfg = cfg.env_runners(rollout_fragment_length=256)
    if algo == "dqn":
        cfg = cfg.env_runners(explore=True).rl_module(model_config={"fcnet_hiddens": [128, 128]})
        cfg.epsilon = [(0, 1.0), (100_000, 0.02)]
    else:
        cfg = cfg.rl_module(model_config={"fcnet_hiddens": [128, 128]})
    return cfg
