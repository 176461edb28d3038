"""Heuristic baselines, by the names used everywhere (CLI, reports, the serving router).

- `greedy`: full knowledge: the action with the best immediate reward for this task given every
  queue (for dedgeai the least delay: the "Opt-TS" of the public DEdgeAI code).
- `least-loaded`: the available target with the least queued seconds, plan `full`.
- `round-robin`: cycles through the targets, plan `full`.
- `random`: uniform over all actions.
- `local`: the task's own node (its BS in dedgeai, its device elsewhere), plan `full`.
- `fixed-exit:<plan>`: greedy placement with the exit plan fixed.
"""
from __future__ import annotations

import numpy as np

from envs.actions import ActionEncoding
from envs.config import ConfigError
from envs.core import NetworkState
from envs.profile import FULL_PLAN

HEURISTICS = ("greedy", "least-loaded", "round-robin", "random", "local", "fixed-exit:<plan>")


def _need_state(name: str, state: NetworkState | None) -> NetworkState:
    if state is None:
        raise ValueError(f"the {name} heuristic reads the full network state; pass state=")
    return state


def _default_plan(encoding: ActionEncoding) -> int:
    return encoding.plans.index(FULL_PLAN) if FULL_PLAN in encoding.plans else len(encoding.plans) - 1


class Greedy:
    """Best immediate reward; `plan` restricts it to one exit plan."""

    def __init__(self, encoding: ActionEncoding, plan: str | None = None):
        self.encoding = encoding
        self.name = "greedy" if plan is None else f"fixed-exit:{plan}"
        self.columns = None
        if plan is not None:
            p = encoding.plans.index(plan)
            self.columns = np.arange(len(encoding.targets)) * len(encoding.plans) + p

    def decide(self, obs: np.ndarray, state: NetworkState | None = None) -> np.ndarray:
        rewards = _need_state(self.name, state).immediate_rewards()
        if self.columns is None:
            return np.argmax(rewards, axis=1)  # first best, as the public code's strict `<`
        return self.columns[np.argmax(rewards[:, self.columns], axis=1)]


class LeastLoaded:
    name = "least-loaded"

    def __init__(self, encoding: ActionEncoding):
        self.encoding, self.plan = encoding, _default_plan(encoding)

    def decide(self, obs: np.ndarray, state: NetworkState | None = None) -> np.ndarray:
        state = _need_state(self.name, state)
        wait = np.where(state.target_available, state.target_wait_s, np.inf)
        return self.encoding.encode(np.argmin(wait, axis=1), self.plan)


class RoundRobin:
    name = "round-robin"

    def __init__(self, encoding: ActionEncoding):
        self.encoding, self.plan = encoding, _default_plan(encoding)
        self.turn: np.ndarray | None = None

    def decide(self, obs: np.ndarray, state: NetworkState | None = None) -> np.ndarray:
        if self.turn is None or self.turn.size != len(obs):
            self.turn = np.zeros(len(obs), dtype=np.int64)
        target = self.turn % len(self.encoding.targets)
        self.turn += 1
        return self.encoding.encode(target, self.plan)


class RandomPolicy:
    name = "random"

    def __init__(self, encoding: ActionEncoding, seed: int | None = None):
        self.encoding = encoding
        self.rng = np.random.default_rng(0 if seed is None else seed)  # same seed, same run

    def decide(self, obs: np.ndarray, state: NetworkState | None = None) -> np.ndarray:
        return self.rng.integers(0, self.encoding.n, size=len(obs))


class Local:
    name = "local"

    def __init__(self, encoding: ActionEncoding):
        self.encoding, self.plan = encoding, _default_plan(encoding)

    def decide(self, obs: np.ndarray, state: NetworkState | None = None) -> np.ndarray:
        return self.encoding.encode(_need_state(self.name, state).local_target, self.plan)


def is_heuristic(name: str) -> bool:
    return name in HEURISTICS[:-1] or name.startswith("fixed-exit:")


def make_heuristic(name: str, encoding: ActionEncoding, seed: int | None = None):
    """A heuristic Policy by name; a clear error lists the names when it is unknown."""
    if name == "greedy":
        return Greedy(encoding)
    if name.startswith("fixed-exit:"):
        plan = name.split(":", 1)[1]
        if plan not in encoding.plans:
            raise ConfigError(f"policy {name!r}: plan {plan!r} is not offered here; plans: {list(encoding.plans)}")
        return Greedy(encoding, plan)
    simple = {"least-loaded": LeastLoaded, "round-robin": RoundRobin, "local": Local}
    if name in simple:
        return simple[name](encoding)
    if name == "random":
        return RandomPolicy(encoding, seed)
    raise ConfigError(f"unknown heuristic {name!r}; known: {', '.join(HEURISTICS)}")
