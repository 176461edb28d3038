"""RLlib's DQN and SAC, fixed to evict on the turn-based dedgeai env and to resume.

RLlib 2.60's `MultiAgentPrioritizedEpisodeReplayBuffer` breaks at its first eviction when one
agent acts per env step, as in our faithful (20 independent BS) form:

1. `KeyError` in the eviction counters: `MultiAgentEpisode.concat_episode` adds the agents first
   seen in a later chunk without their module mapping, and eviction reads
   `_agent_to_module_mapping` directly.
2. `ValueError` in `_sample_independent`: when the oldest episode is still running, eviction
   drops it together with its incoming chunk, and its next chunk then arrives as a headless
   "new" episode whose env-to-agent timestep map does not start at its own first step.

`EvictingTurnBasedReplay` maps every agent of a stored episode after each `add` (1) and drops
the later chunks of an evicted episode instead of storing them headless (2): an episode, once
evicted, is gone, as the buffer's own docstring intends.

3. A resume crashes at its first update: RLlib checkpoints the sampled-steps counter that starts
   learning but not the replay buffer (here GBs), so the restored algorithm learns at once from
   the first iteration's few decisions, some agents have none, and DQN's priority update reads
   the NaN td-error of a module that was not in the batch (`TypeError: 'float' object is not
   iterable`). After a restore, `ResumableDQN` / `ResumableSAC` only sample until the buffer again
   holds `num_steps_sampled_before_learning_starts` env steps, as a fresh run does (in the
   shared form too, where learning at once from a near-empty buffer does not crash).

`TurnBasedDQN` / `TurnBasedSAC` are RLlib's DQN and SAC with all three fixes, `ResumableDQN` /
`ResumableSAC` (the shared form) with the third; everything else is RLlib's.

Speed, not a fix: a full faithful buffer holds 451k decisions as millions of Python objects,
which every full garbage collection scans although they live until evicted (1-2.5 s of a
12-14 s iteration). `TurnBasedDQN` / `TurnBasedSAC` collect once per iteration, with the
older heap frozen (`_FrozenHeapMixin`; `benchmarks/agents/rllib_replay_profile.py
--gc-freeze-from` measures it).
"""
from __future__ import annotations

import gc

from ray.rllib.algorithms.dqn import DQN
from ray.rllib.algorithms.sac import SAC
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils import force_list
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    TIMERS,
)
from ray.rllib.utils.replay_buffers.multi_agent_prioritized_episode_buffer import (
    MultiAgentPrioritizedEpisodeReplayBuffer,
)

REPLACED_BUFFER = "MultiAgentPrioritizedEpisodeReplayBuffer"


class EvictingTurnBasedReplay(MultiAgentPrioritizedEpisodeReplayBuffer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._evicted_ids: set[str] = set()

    def add(self, episodes, weight=None) -> None:
        incoming = [eps for eps in force_list(episodes) if eps.id_ not in self._evicted_ids]
        stored_before = set(self.episode_id_to_index)
        super().add(incoming, weight)
        stored_now = self.episode_id_to_index
        self._evicted_ids |= stored_before - set(stored_now)
        for eps in incoming:
            if eps.id_ not in stored_now:           # evicted together with its new chunk
                self._evicted_ids.add(eps.id_)
                continue
            stored = self.episodes[stored_now[eps.id_] - self._num_episodes_evicted]
            for agent in stored.agent_episodes:
                stored.module_for(agent)             # caches the mapping eviction reads

    def get_state(self):
        return {**super().get_state(), "_evicted_ids": sorted(self._evicted_ids)}

    def set_state(self, state) -> None:
        super().set_state(state)
        self._evicted_ids = set(state.get("_evicted_ids", ()))


class _EvictingReplayMixin:
    """Builds `EvictingTurnBasedReplay` where the config asks for RLlib's multi-agent
    prioritized episode buffer (its name stays in the config: RLlib's SAC validates the name)."""

    def _create_local_replay_buffer_if_necessary(self, config):
        replay = config.get("replay_buffer_config") or {}
        if replay.get("type") != REPLACED_BUFFER:
            return super()._create_local_replay_buffer_if_necessary(config)
        kwargs = {k: v for k, v in replay.items() if k != "type"}
        kwargs["metrics_num_episodes_for_smoothing"] = self.config.metrics_num_episodes_for_smoothing
        return EvictingTurnBasedReplay(**kwargs)


class _RefillAfterRestoreMixin:
    """Learning waits after a restore until the (unsaved) replay buffer is refilled (fix 3)."""

    _steps_to_refill = 0       # env steps, as RLlib counts them to start learning

    def restore_from_path(self, path, *args, **kwargs):
        super().restore_from_path(path, *args, **kwargs)
        self._steps_to_refill = self.config.num_steps_sampled_before_learning_starts

    def training_step(self):
        if self._steps_to_refill > 0:
            self._steps_to_refill -= self._sample_into_replay()
            return None
        return super().training_step()

    def _sample_into_replay(self) -> int:
        # DQN's own sampling half, with the same timers and env-runner metrics (episodes that
        # finish while refilling are reported like any others).
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group, concat=True,
                sample_timeout_s=self.config.sample_timeout_s,
                _uses_new_env_runners=True, _return_metrics=True)
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            self.local_replay_buffer.add(episodes)
        return sum(episode.env_steps() for episode in episodes)


class _FrozenHeapMixin:
    """No garbage collection during an iteration; after it, one collection of what the iteration
    built, with every older object frozen (`gc.freeze()`) so that it skips the stored episodes.
    Objects are still freed by reference counting; a full collection every
    `full_collection_every` iterations frees the reference cycles among the older ones."""

    freeze_heap = True
    full_collection_every = 10
    _frozen_iterations = 0

    def training_step(self):
        if not self.freeze_heap or not gc.isenabled():
            return super().training_step()
        gc.freeze()
        gc.disable()
        try:
            return super().training_step()
        finally:
            gc.enable()
            gc.collect(1)                  # the young generations: this iteration's objects
            gc.unfreeze()
            self._frozen_iterations += 1
            if self._frozen_iterations % self.full_collection_every == 0:
                gc.collect()


class ResumableDQN(_RefillAfterRestoreMixin, DQN):
    pass


class ResumableSAC(_RefillAfterRestoreMixin, SAC):
    pass


class TurnBasedDQN(_FrozenHeapMixin, _EvictingReplayMixin, ResumableDQN):
    pass


class TurnBasedSAC(_FrozenHeapMixin, _EvictingReplayMixin, ResumableSAC):
    pass
