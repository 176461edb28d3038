"""The env runner of the SAC agents: B copies of the vectorised core, flat transitions out.

`EdgeDecisionRunner` (an RLlib `EnvRunner`) steps the scenario's NumPy core with the module's
exploration forward pass, writes LAD's historical action probability store after every decision
and returns flat transitions (obs, action, reward, next_obs, done, agent, prior, next_prior,
by_source) instead of Episode objects. In a multi-agent form a transition links an agent's
decision to that same agent's next decision (each base station is its own independent learner,
as in LAD-TS). Extensions (`policies/extensions/`) may wrap the core, act instead of the module
(an action source) and rewrite rewards (a reward processor). Scales with `num_env_runners` (each
runner its own copies and its own LAD store) and `num_envs_per_env_runner`.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import ray
import torch

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.env.env_runner import EnvRunner
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME, WEIGHTS_SEQ_NO

from envs.scenarios import load_scenario, make_core
from policies.extensions import build_extensions
from policies.sac.module import AGENT, PRIOR

INPUT_ENV_SPACES = "__env__"
INPUT_ENV_SINGLE_SPACES = "__env_single__"
# The runner's per-copy sampling state, saved with every checkpoint (`sampler_state`).
SAMPLER_ARRAYS = ("p_obs", "p_act", "p_rew", "p_prior", "p_open", "p_index", "p_by_source", "ep_delay",
                  "ep_reward", "ep_len", "active", "ep_start")
TRANSITION_KEYS = ("obs", "act", "rew", "next_obs", "done", "agent", "prior", "next_prior", "by_source")


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


class EdgeDecisionRunner(EnvRunner, Checkpointable):
    """Samples transitions from B copies of the vectorised core with the module's exploration pass."""

    def __init__(self, *, config: AlgorithmConfig, **kwargs):
        super().__init__(config=config, **kwargs)
        env_config = dict(self.config.env_config)
        self.scenario = load_scenario(env_config["scenario"], env_config.get("overrides", ()))
        seed = env_config.get("seed")
        index = self.worker_index or 0
        self.seed = seed = None if seed is None else int(seed) + 7919 * index
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
        self.p_by_source = np.zeros((B, E), bool)     # taken by an action source, not the module
        extensions = build_extensions(self.config.options)
        for extension in extensions:
            self.core = extension.wrap_core(self.core)
        self.sources = {s.name: s for s in (e.action_source(self) for e in extensions) if s is not None}
        self.reward_processors = [p for p in (e.reward_processor(self) for e in extensions) if p is not None]
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
            if name in state:
                getattr(self, name)[...] = state[name]
        # Transitions held back by a reward processor are replay data, which checkpoints do not keep.
        for processor in self.reward_processors:
            processor.reset()
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
    def _act(self, observed: np.ndarray, live: np.ndarray, obs: np.ndarray, agent: np.ndarray,
             prior: np.ndarray, random_actions: bool, source) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """-> (actions, by_source, the module's logits or None): uniform actions, the module's
        samples, or what `source` decides (LAD's store still learns the module's probabilities)."""
        logits = None
        if random_actions:
            logits = np.zeros((live.size, self.act_space.n), np.float32)
        elif source is None or source.needs_learner or self.lad:
            batch = {Columns.OBS: torch.from_numpy(obs), AGENT: torch.from_numpy(agent),
                     PRIOR: torch.from_numpy(prior)}
            logits = self.explore(batch)[Columns.ACTION_DIST_INPUTS].numpy()

        def learner_actions() -> np.ndarray:
            # Sample from softmax(logits) with the Gumbel-max trick.
            return (logits - np.log(-np.log(self.rng.random(logits.shape)))).argmax(1)

        if source is None:
            return learner_actions(), np.zeros(live.size, bool), logits
        actions, by_source = source.decide(observed, live, learner_actions)
        return actions, by_source, logits

    @torch.no_grad()
    def sample(self, num_timesteps: int | None = None, random_actions: bool = False,
               source: str | None = None, **kwargs) -> dict:
        """At least `num_timesteps` decisions over all copies -> flat transition arrays. The
        actions are uniform (`random_actions`), the module's samples, or those of the action
        source named `source` (an extension's; the transitions say so in `by_source`)."""
        if source is not None and source not in self.sources:
            raise ValueError(f"no action source {source!r}; this runner has {sorted(self.sources)}")
        acting = self.sources.get(source)
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
            out["by_source"].append(self.p_by_source[r, a])
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
            actions, by_source, logits = self._act(observed, live, obs, agent, prior, random_actions, acting)
            # LAD stores the policy's own probabilities, also while an action source acts.
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
            self.p_by_source[live, agent] = by_source
            self.ep_delay[live] += result.delay_s[live]
            self.ep_reward[live] += result.reward[live]
            self.ep_len[live] += 1
            decided += live.size
            ended = live[result.done[live]]
            if ended.size:
                self._end_episodes(ended, close)
        self.num_env_steps_sampled_lifetime += decided
        cat = {k: np.concatenate(v) for k, v in out.items() if v}
        for processor in self.reward_processors:
            if cat:
                cat = processor.process(cat)
        cat["decisions"] = decided
        return cat

    def _end_episodes(self, ended: np.ndarray, close) -> None:
        for r in ended:
            open_agents = np.flatnonzero(self.p_open[r])
            rr = np.full(open_agents.size, r)
            close(rr, open_agents, self.p_obs[rr, open_agents], self.p_prior[rr, open_agents], True)
            for processor in self.reward_processors:
                processor.on_episode_end(int(r), int(self.ep_start[r]))
            self.finished.append({"mean_delay_s": self.ep_delay[r] / self.ep_len[r],
                                  "mean_reward": self.ep_reward[r] / self.ep_len[r],
                                  "return": self.ep_reward[r], "decisions": int(self.ep_len[r]),
                                  "worker": int(self.worker_index or 0),
                                  "start": int(self.ep_start[r])})
        self.active[ended] = False
        self.ep_delay[ended], self.ep_reward[ended], self.ep_len[ended] = 0.0, 0.0, 0
        self.core.reset(self._start(ended))

    def stop(self):
        self.core = None
