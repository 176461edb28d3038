"""The Policy protocol: heuristics, trained agents and the serving router all decide this way."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from envs.core import NetworkState


@runtime_checkable
class Policy(Protocol):
    """Maps a batch of observations [B, obs_dim] to action indices [B] (see envs.actions).

    Full-knowledge heuristics read `state`; learned policies read `obs` only.
    """

    name: str

    def decide(self, obs: np.ndarray, state: NetworkState | None = None) -> np.ndarray:
        ...
