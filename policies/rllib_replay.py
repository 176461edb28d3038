"""RLlib's multi-agent prioritized episode buffer, made to evict on the turn-based dedgeai env.

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
evicted, is gone, as the buffer's own docstring intends. `TurnBasedDQN` / `TurnBasedSAC` are
RLlib's DQN and SAC using it for that buffer type; everything else is RLlib's.
"""
from __future__ import annotations

from ray.rllib.algorithms.dqn import DQN
from ray.rllib.algorithms.sac import SAC
from ray.rllib.utils import force_list
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


class TurnBasedDQN(_EvictingReplayMixin, DQN):
    pass


class TurnBasedSAC(_EvictingReplayMixin, SAC):
    pass
