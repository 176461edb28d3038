"""What every vectorised scenario core provides, and the full-knowledge state heuristics read.

A core steps B copies of one scenario at once as NumPy arrays. One step is one task decision
in every copy. Cores do not reset finished copies by themselves: `step` reports `done`, and the
caller (an adapter or the evaluator) decides when to call `reset(mask=...)`. That keeps the
Gymnasium single env, the vector env (next-step autoreset, as RLlib expects) and the evaluator
thin and exact.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import numpy as np

from envs.actions import ActionEncoding
from envs.observation import ObservationLayout


@dataclass
class StepResult:
    reward: np.ndarray          # [B] float64
    delay_s: np.ndarray         # [B] latency of the task just decided
    quality: np.ndarray         # [B] accuracy_ratio of its result (NaN without a generator)
    deadline_missed: np.ndarray  # [B] bool (always False without deadlines)
    done: np.ndarray            # [B] bool: the copy finished its episode with this decision


@dataclass
class NetworkState:
    """Full knowledge of B networks at the current decision, in the action encoding's target order.

    Heuristic policies read this; learned policies read only the observation. The serving router
    builds one from live node reports, so heuristics route live traffic the same way.
    """
    encoding: ActionEncoding
    target_wait_s: np.ndarray            # [B, T] seconds of work already queued at each target
    local_target: np.ndarray             # [B] the target that is 'local' for the current task
    target_available: np.ndarray         # [B, T] bool
    reward_fn: Callable[[], np.ndarray]  # -> [B, A] immediate reward of every action
    context_key: np.ndarray | None = None  # [B] decision-context ids (LAD's store key), when known

    def immediate_rewards(self) -> np.ndarray:
        return self.reward_fn()


class VectorCore(ABC):
    """B copies of a scenario stepped together. Subclasses fix `layout` and `encoding`."""

    scenario: str
    layout: ObservationLayout
    encoding: ActionEncoding
    has_quality: bool = False
    has_deadlines: bool = False

    def __init__(self, num_envs: int, seed: int | None = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.rng = np.random.default_rng(0 if seed is None else seed)
        self.rows = np.arange(num_envs)
        # Shared read-only results for scenarios without quality or deadlines (saves two allocations a step).
        self._no_quality = np.full(num_envs, np.nan)
        self._never_missed = np.zeros(num_envs, dtype=bool)
        self._no_quality.flags.writeable = False
        self._never_missed.flags.writeable = False

    def seed(self, seed: int | None) -> None:
        """Same seed, same run; None means the scenario's default stream (seed 0 unless it says otherwise)."""
        self.rng = np.random.default_rng(0 if seed is None else seed)

    def get_state(self) -> dict:
        """A snapshot from which a core built with the same config continues exactly: every
        writable array, or dict of arrays (queues, the tasks of the slot, pointers), and the
        RNG's position."""
        arrays: dict[str, object] = {}
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.flags.writeable:
                arrays[name] = value.copy()
            elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
                arrays[name] = {k: v.copy() for k, v in value.items()}
        return {"num_envs": self.num_envs, "arrays": arrays, "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        """Continue from `get_state()` of a core with the same config and num_envs."""
        if state["num_envs"] != self.num_envs:
            raise ValueError(f"snapshot of {state['num_envs']} copies, this core has {self.num_envs}")
        for name, saved in state["arrays"].items():
            current = getattr(self, name, None)
            pairs = ([(current[k], v) for k, v in saved.items()] if isinstance(saved, dict) and
                     isinstance(current, dict) and saved.keys() == current.keys() else [(current, saved)])
            for target, value in pairs:
                if not isinstance(target, np.ndarray) or target.shape != np.shape(value):
                    raise ValueError(f"snapshot field {name!r} does not fit this core (another scenario config?)")
                target[...] = value
        self.rng.bit_generator.state = state["rng"]

    @abstractmethod
    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start a new episode in the copies where `mask` is True (all when None)."""

    @abstractmethod
    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """Decide the current task of every copy (or of the `active` ones) with `actions` [B].

        Inactive copies are left exactly as they are; their entries in the result are reward 0,
        delay NaN, not done.
        """

    def _result(self, rows: np.ndarray, reward: np.ndarray, delay_s: np.ndarray, done: np.ndarray,
                quality: np.ndarray | None = None, missed: np.ndarray | None = None) -> StepResult:
        """Scatter the per-row outcomes of `rows` into full [B] arrays."""
        n = self.num_envs
        if rows.size == n:
            return StepResult(reward, delay_s, self._no_quality if quality is None else quality,
                              self._never_missed if missed is None else missed, done)
        if quality is None:
            quality = np.full(rows.size, np.nan)
        if missed is None:
            missed = np.zeros(rows.size, dtype=bool)
        out = StepResult(np.zeros(n), np.full(n, np.nan), np.full(n, np.nan),
                         np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
        out.reward[rows], out.delay_s[rows], out.quality[rows] = reward, delay_s, quality
        out.deadline_missed[rows], out.done[rows] = missed, done
        return out

    @abstractmethod
    def observe(self) -> np.ndarray:
        """[B, layout.dim] float32 observation of the current task of every copy."""

    @abstractmethod
    def network_state(self) -> NetworkState:
        ...

    def context_key(self) -> np.ndarray:
        """[B] int: an id of the decision context (LAD's historical-probability key)."""
        return np.zeros(self.num_envs, dtype=np.int64)

    @property
    def num_context_keys(self) -> int:
        return 1

    def acting_agent(self) -> np.ndarray:
        """[B] int: which agent decides the current task (multi-agent forms); 0 otherwise."""
        return np.zeros(self.num_envs, dtype=np.int64)

    @property
    def num_agents(self) -> int:
        return 1

    def mean_episode_decisions(self) -> float:
        """Expected decisions per episode: sizes buffers and progress bars."""
        return 1.0
