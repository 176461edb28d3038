"""The action encoding shared by every scenario, policy and the serving router.

An action chooses where a task runs (a target: a node, a server, "local", ...) and which exit
plan the generator follows. One integer encodes both, target-major:

    index = target * n_plans + plan        target, plan = divmod(index, n_plans)

Scenarios without a generator (dedgeai) have the single plan "full", so the index is the target.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActionEncoding:
    targets: tuple[str, ...]
    plans: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.targets or not self.plans:
            raise ValueError("an action encoding needs at least one target and one plan")

    @property
    def n(self) -> int:
        return len(self.targets) * len(self.plans)

    def encode(self, target: np.ndarray | int, plan: np.ndarray | int) -> np.ndarray | int:
        return target * len(self.plans) + plan

    def decode(self, index: np.ndarray | int) -> tuple[np.ndarray | int, np.ndarray | int]:
        """index -> (target, plan); works elementwise on arrays."""
        return divmod(index, len(self.plans))

    def describe(self, index: int) -> str:
        target, plan = self.decode(int(index))
        return f"{self.targets[target]}/{self.plans[plan]}"

    def check(self, actions: np.ndarray) -> np.ndarray:
        """Validate a batch of actions coming from outside (a policy, a request)."""
        actions = np.asarray(actions)
        if actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
        if actions.size and (actions.min() < 0 or actions.max() >= self.n):
            raise ValueError(f"action index out of range: allowed 0..{self.n - 1}, "
                             f"got {int(actions.min())}..{int(actions.max())}")
        return actions.astype(np.int64, copy=False)

    def to_json(self) -> dict:
        return {"order": "target-major: index = target * n_plans + plan",
                "targets": list(self.targets), "plans": list(self.plans)}
