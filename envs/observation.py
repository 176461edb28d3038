"""The observation layout: named fields in a fixed order, with a version number.

The simulator and the serving router both build observations with `ObservationLayout.build`,
so a policy trained in simulation reads live state the same way. Raw values are stored (seconds,
Mbit, Gcycles); `scale` is the typical magnitude of each field, which learned policies divide by.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

LAYOUT_VERSION = 1


@dataclass(frozen=True)
class ObsField:
    name: str
    size: int
    scale: float
    doc: str = ""
    # One value per action, column a about action a (e.g. each server's queue when action a
    # places the task on server a): what a per-action network scores every action from.
    per_action: bool = False


@dataclass(frozen=True)
class ObservationLayout:
    scenario: str
    fields: tuple[ObsField, ...]
    version: int = LAYOUT_VERSION

    @property
    def dim(self) -> int:
        return sum(f.size for f in self.fields)

    @cached_property
    def _slices(self) -> tuple[tuple[str, int, slice], ...]:
        out, start = [], 0
        for f in self.fields:
            out.append((f.name, f.size, slice(start, start + f.size)))
            start += f.size
        return tuple(out)

    def offsets(self) -> dict[str, slice]:
        return {name: where for name, _, where in self._slices}

    def field(self, obs: np.ndarray, name: str) -> np.ndarray:
        """The columns of one named field of a batch of observations [B, dim]."""
        return obs[..., self.offsets()[name]]

    def per_action_columns(self) -> list[list[int]]:
        """For every per-action field, its columns in action order: [fields][actions]."""
        return [list(range(where.start, where.stop)) for (name, _, where), f in zip(self._slices, self.fields)
                if f.per_action]

    def scales(self) -> np.ndarray:
        return np.concatenate([np.full(f.size, f.scale, dtype=np.float32) for f in self.fields])

    def build(self, batch: int, **values: np.ndarray) -> np.ndarray:
        """Assemble [batch, dim] float32 from one array per field ([batch] or [batch, size])."""
        if len(values) != len(self.fields) or any(name not in values for name, _, _ in self._slices):
            missing = [f.name for f in self.fields if f.name not in values]
            extra = sorted(set(values) - {f.name for f in self.fields})
            raise ValueError(f"{self.scenario} observation: missing fields {missing}, unknown {extra}")
        out = np.empty((batch, self.dim), dtype=np.float32)
        for name, size, where in self._slices:
            value = values[name]
            out[:, where] = value.reshape(batch, size) if size > 1 else np.reshape(value, (batch, 1))
        return out

    def to_json(self) -> dict:
        return {"scenario": self.scenario, "version": self.version, "dim": self.dim,
                "fields": [{"name": f.name, "size": f.size, "scale": f.scale, "doc": f.doc}
                           for f in self.fields]}
