"""The training schedule of d2sac, lad and sac-mlp (CleanRL order: act, step, store, update, log).

`DiffusionSAC.training_step` samples from the env runners (`policies/sac/runner.py`), stores the
transitions, then makes ONE `learner_group.update` call per iteration carrying k minibatches
(k = decisions sampled / `decisions_per_update`), so RLlib's per-call overhead is paid once per
iteration instead of once per SGD step. Extensions choose who acts, where transitions are kept
and add updates (`policies/extensions/`).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

from policies.extensions import build_extensions
from policies.sac.config import DiffusionSACConfig
from policies.sac.replay import TransitionReplay

# SGD steps per learner_group.update call: bounds the rows one call holds (a pre-training's many).
UPDATES_PER_CALL = 256


class DiffusionSAC(Algorithm):
    @classmethod
    def get_default_config(cls) -> DiffusionSACConfig:
        return DiffusionSACConfig(algo_class=cls)

    def setup(self, config):
        super().setup(config)
        options = self.config.options
        n_agents, obs_dim, n_actions = self._on_sampling_runners(
            lambda r: (r.n_agents, r.obs_space.shape[0], r.act_space.n))[0]
        self.n_agents = n_agents
        self.extensions = build_extensions(options)
        self.replay = TransitionReplay(n_agents, options.replay_capacity, obs_dim, n_actions,
                                       seed=self.config.seed, with_prior=self.config.start == "prior")
        for extension in self.extensions:
            self.replay = extension.wrap_replay(self.replay, self)
        self.episodes: list[dict] = []        # every completed episode, in order (all copies)
        self.decisions = 0
        self.sgd_steps = 0
        self._owed_updates = 0.0

    def _on_sampling_runners(self, fn: Callable) -> list:
        """`fn` on the runners that sample: the remote ones, or the local one when there are none."""
        group = self.env_runner_group
        return group.foreach_env_runner(fn, local_env_runner=group.num_remote_env_runners() == 0)

    def lad_store(self) -> np.ndarray:
        """LAD's historical action probabilities: every sampling runner keeps its own (its own
        episodes); the policy artifact gets their mean, still a probability per context."""
        stores = self._on_sampling_runners(lambda r: r.store)
        return stores[0] if len(stores) == 1 else np.mean(stores, axis=0).astype(np.float32)

    def _acting_source(self) -> str | None:
        names = [n for n in (e.acting_source(self.decisions) for e in self.extensions) if n]
        return names[0] if names else None

    def training_step(self) -> None:
        options, group = self.config.options, self.env_runner_group
        per_runner = max(1, options.rollout_decisions // max(1, group.num_remote_env_runners() or 1))
        randomly = self.decisions < options.random_decisions
        source = self._acting_source()
        t0 = time.perf_counter()
        samples = self._on_sampling_runners(
            lambda r: (r.sample(num_timesteps=per_runner, random_actions=randomly, source=source),
                       r.get_metrics()))
        sample_s = time.perf_counter() - t0
        new = 0
        for data, finished in samples:
            if "agent" in data:
                self.replay.add(data)
            new += data["decisions"]
            for ep in finished:
                ep["decisions_total"] = self.decisions + new
                self.episodes.append(ep)
        self.decisions += new
        self._number_episodes()

        learn_s, learner_results = 0.0, None
        if self.decisions >= options.learning_starts and self.replay.ready(options.minibatch_per_agent):
            self._owed_updates += new / options.decisions_per_update
            k = int(self._owed_updates)
            self._owed_updates -= k
            k += sum(e.extra_updates(self.decisions) for e in self.extensions)
            if k > 0:
                t1 = time.perf_counter()
                learner_results = self._update(k)
                group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)
                learn_s = time.perf_counter() - t1
        if learner_results is not None:
            self.metrics.aggregate(learner_results, key="learners")
        recent = self.episodes[-10:]
        self.metrics.log_dict({
            "edge/episodes": len(self.episodes), "edge/decisions": self.decisions,
            "edge/sgd_steps": self.sgd_steps, "edge/sample_s": sample_s, "edge/learn_s": learn_s,
            "edge/mean_delay_last10_s": float(np.mean([e["mean_delay_s"] for e in recent])) if recent else float("nan"),
            "edge/mean_return_last10": float(np.mean([e["return"] for e in recent])) if recent else float("nan"),
        }, window=1)

    def _update(self, k: int):
        """k SGD steps on replayed minibatches, in calls of at most UPDATES_PER_CALL steps."""
        m = self.config.options.minibatch_per_agent
        rows = self.n_agents * m
        results = None
        for chunk in range(0, k, UPDATES_PER_CALL):
            n = min(UPDATES_PER_CALL, k - chunk)
            batch = MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(self.replay.sample(m, n))}, env_steps=n * rows)
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
                         "sgd_steps": self.sgd_steps, "lad_store": self.lad_store(), "samplers": samplers,
                         "extensions": {e.name: e.get_state() for e in self.extensions}}
        return state

    def set_state(self, state):
        super().set_state(state)
        edge = state.get("edge")
        if not edge:
            return
        self.episodes = list(edge["episodes"])
        self.decisions = int(edge["decisions"])
        self.sgd_steps = int(edge["sgd_steps"])
        for extension in self.extensions:
            extension.set_state(edge.get("extensions", {}).get(extension.name, {}))
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
