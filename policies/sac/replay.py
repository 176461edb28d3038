"""Replay of the SAC agents: per-agent circular NumPy buffers (no Episode objects, no connectors)."""
from __future__ import annotations

import numpy as np

from ray.rllib.core.columns import Columns

from policies.sac.module import AGENT, BY_SOURCE, NEXT_PRIOR, PRIOR


class TransitionReplay:
    """Per-agent circular buffers; `sample(m)` returns E*m rows grouped by agent (agent-major)."""

    def __init__(self, n_agents: int, capacity_per_agent: int, obs_dim: int, n_actions: int,
                 seed: int | None = None, with_prior: bool = False):
        E, C = n_agents, capacity_per_agent
        self.E, self.C, self.n_actions = E, C, n_actions
        self.obs = np.zeros((E, C, obs_dim), np.float32)
        self.next_obs = np.zeros((E, C, obs_dim), np.float32)
        self.act = np.zeros((E, C), np.int64)
        self.rew = np.zeros((E, C), np.float32)
        self.done = np.zeros((E, C), np.float32)
        self.by_source = np.zeros((E, C), np.float32)
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
            self.by_source[e, slots] = data["by_source"][idx]
            if self.with_prior:
                self.prior[e, slots] = data["prior"][idx]
                self.next_prior[e, slots] = data["next_prior"][idx]
            self.pos[e] = (self.pos[e] + idx.size) % self.C
            self.size[e] = min(self.size[e] + idx.size, self.C)

    def ready(self, m: int) -> bool:
        return bool((self.size >= min(m, self.C)).all())

    def sibling(self, capacity_per_agent: int, seed: int | None) -> "TransitionReplay":
        """An empty buffer of the same agents and shapes (e.g. to keep some transitions apart)."""
        return TransitionReplay(self.E, capacity_per_agent, self.obs.shape[-1], self.n_actions,
                                seed=seed, with_prior=self.with_prior)

    def sample(self, m: int, k: int = 1) -> dict[str, np.ndarray]:
        """k minibatches of E*m rows each, concatenated; each minibatch grouped by agent."""
        return self.sample_mixed([(self, m)], m, k)

    @staticmethod
    def sample_mixed(parts: list[tuple["TransitionReplay", int]], m: int, k: int) -> dict[str, np.ndarray]:
        """k minibatches of E*m rows, every agent's m rows made of `n` from each (buffer, n) of
        `parts`, in that order; flat [k*E*m, ...], grouped by agent within each minibatch."""
        drawn = [replay.draw(n, k) for replay, n in parts if n]
        E = parts[0][0].E
        return {key: np.concatenate([d[key] for d in drawn], axis=2).reshape(k * E * m, *drawn[0][key].shape[3:])
                for key in drawn[0]}

    def draw(self, m: int, k: int) -> dict[str, np.ndarray]:
        """Uniform rows, [k, E, m, ...]: m of every agent's for each of k minibatches."""
        idx = (self.rng.random((k, self.E, m)) * self.size[None, :, None]).astype(np.int64)
        e = np.broadcast_to(np.arange(self.E)[None, :, None], idx.shape)
        batch = {Columns.OBS: self.obs[e, idx], Columns.NEXT_OBS: self.next_obs[e, idx],
                 Columns.ACTIONS: self.act[e, idx], Columns.REWARDS: self.rew[e, idx],
                 Columns.TERMINATEDS: self.done[e, idx], BY_SOURCE: self.by_source[e, idx], AGENT: e.copy()}
        if self.with_prior:
            batch[PRIOR] = self.prior[e, idx]
            batch[NEXT_PRIOR] = self.next_prior[e, idx]
        return batch

