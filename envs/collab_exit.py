"""The `collab-exit` scenario: devices, edge servers and a multi-exit generator (Tian et al., reconstructed).

The paper is known from its abstract only, so the numbers here are this project's choices, made
easy to change in the presets (`envs/presets/collab-exit/*.yaml`):

- Devices compute locally (FIFO queue) or upload to one of M edge servers over their own
  uplink (Shannon rate; path loss 128.1 + 37.6 log10 d; Rayleigh fading that evolves as a
  Gauss-Markov process). The result comes back at the same rate.
- Edge servers are FIFO queues whose usable capacity is f_m x (1 - u_m): u_m is background
  utilisation, a clipped random walk. Servers can be down (always, or failing and recovering as a
  Markov chain); a task sent to a down server is lost: quality 0, latency = its deadline, missed.
- Reward = quality - 0.1 x latency - 1 x [deadline missed] (weights configurable).

Families `urban`, `rural`, `peak`, `degraded` share the observation and action spaces.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from envs.config import FloatRange, IntRange, StrictModel
from envs.device_core import DeviceScenarioConfig, DeviceSlotCore
from envs.observation import ObservationLayout, ObsField
from envs.profile import ExitProfile


class EdgeConfig(StrictModel):
    n_edges: int = Field(4, ge=1, le=64)
    gcycles: IntRange = (20, 50)
    always_down: int = Field(0, ge=0, description="servers (the last ones) that never work")
    fail_prob: float = Field(0.0, ge=0.0, le=1.0, description="per slot, of a working server")
    recover_prob: float = Field(0.2, ge=0.0, le=1.0, description="per slot, of a failed server")
    load_start: FloatRange = (0.0, 0.3)
    load_step_std: float = Field(0.05, ge=0.0, le=1.0, description="background load random-walk step")
    load_max: float = Field(0.9, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> "EdgeConfig":
        if self.always_down >= self.n_edges:
            raise ValueError(f"always_down must be < n_edges={self.n_edges}, got {self.always_down}")
        if self.gcycles[0] <= 0:
            raise ValueError(f"gcycles must be > 0, got {list(self.gcycles)}")
        if self.load_start[1] > self.load_max:
            raise ValueError(f"load_start {list(self.load_start)} exceeds load_max {self.load_max}")
        return self


class CollabExitConfig(DeviceScenarioConfig):
    scenario: Literal["collab-exit"] = "collab-exit"
    family: str = "urban"
    edges: EdgeConfig = EdgeConfig()


def collab_exit_layout(core: "CollabExitCore") -> ObservationLayout:
    m = core.config.edges.n_edges
    fields = core.task_fields() + [
        ObsField("edge_gcycles", m, 50.0, "usable capacity f_m (1 - u_m) of each edge server (0 if down)"),
        ObsField("edge_wait_s", m, 5.0, "queued work at each edge server, seconds"),
        ObsField("edge_up", m, 1.0, "1 if the edge server works"),
    ]
    return ObservationLayout("collab-exit", tuple(fields))


class CollabExitCore(DeviceSlotCore):
    scenario = "collab-exit"

    def __init__(self, config: CollabExitConfig, num_envs: int = 1, seed: int | None = None,
                 profile: ExitProfile | None = None):
        m = config.edges.n_edges
        super().__init__(config, ("local",) + tuple(f"edge{i}" for i in range(m)), num_envs, seed, profile)
        self.layout = collab_exit_layout(self)
        B = num_envs
        self.edge_f = np.zeros((B, m))
        self.edge_load = np.zeros((B, m))
        self.edge_up = np.ones((B, m), dtype=bool)
        self.edge_backlog = np.zeros((B, m))
        self.reset()

    # ---- per-episode network and its evolution --------------------------------------------------
    def _reset_network(self, rows: np.ndarray) -> None:
        e, k = self.config.edges, rows.size
        self.edge_f[rows] = self.rng.integers(e.gcycles[0], e.gcycles[1] + 1, size=(k, e.n_edges))
        self.edge_load[rows] = self.rng.uniform(*e.load_start, size=(k, e.n_edges))
        self.edge_backlog[rows] = 0.0
        up = np.ones((k, e.n_edges), dtype=bool)
        if e.always_down:
            up[:, -e.always_down:] = False
        self.edge_up[rows] = up

    def _end_slot_network(self, rows: np.ndarray) -> None:
        e, k = self.config.edges, rows.size
        usable = self._usable_f(rows)
        self.edge_backlog[rows] = np.maximum(self.edge_backlog[rows] - usable * self.config.slot_s, 0.0)
        step = self.rng.normal(0.0, e.load_step_std, size=(k, e.n_edges))
        self.edge_load[rows] = np.clip(self.edge_load[rows] + step, 0.0, e.load_max)
        if e.fail_prob > 0:
            up = self.edge_up[rows]
            draw = self.rng.random(size=up.shape)
            up = np.where(up, draw >= e.fail_prob, draw < e.recover_prob)
            if e.always_down:
                up[:, -e.always_down:] = False
            # A failed server loses its queue: those tasks were already counted as delivered late.
            self.edge_backlog[rows] = np.where(up, self.edge_backlog[rows], 0.0)
            self.edge_up[rows] = up

    def _usable_f(self, r) -> np.ndarray:
        return self.edge_f[r] * (1.0 - self.edge_load[r])

    # ---- outcomes --------------------------------------------------------------------------------
    def _latency(self, r, target, work, task):
        device = task["device"]
        local = target == 0
        edge = np.maximum(target - 1, 0)
        f_dev = self.device_f[r, device]
        local_latency = (self.device_backlog[r, device] + work) / f_dev
        rate = self.uplink_rate_mbit(r, device)
        f_edge = self.edge_f[r, edge] * (1.0 - self.edge_load[r, edge])
        edge_latency = ((task["input_mbit"] + task["result_mbit"]) / rate
                        + (self.edge_backlog[r, edge] + work) / f_edge)
        up = self.edge_up[r, edge]
        latency = np.where(local, local_latency, np.where(up, edge_latency, task["deadline_s"]))
        return latency, ~local & ~up

    def _place(self, rows, target, work, task) -> None:
        local = target == 0
        device = task["device"]
        self.device_backlog[rows[local], device[local]] += work[local]
        edge = target[~local] - 1
        self.edge_backlog[rows[~local], edge] += work[~local] * self.edge_up[rows[~local], edge]

    # ---- what policies read ----------------------------------------------------------------------
    def _network_fields(self) -> dict[str, np.ndarray]:
        usable = self._usable_f(self.rows) * self.edge_up
        wait = np.where(self.edge_up, self.edge_backlog / np.maximum(usable, 1e-9), 0.0)
        return {"edge_gcycles": usable, "edge_wait_s": wait, "edge_up": self.edge_up}

    def _target_wait_s(self) -> tuple[np.ndarray, np.ndarray]:
        device = self.task_device[self.rows, self.ptr]
        local_wait = self.device_backlog[self.rows, device] / self.device_f[self.rows, device]
        edge_wait = np.where(self.edge_up, self.edge_backlog / np.maximum(self._usable_f(self.rows), 1e-9), np.inf)
        wait = np.concatenate([local_wait[:, None], edge_wait], axis=1)
        available = np.concatenate([np.ones((self.num_envs, 1), dtype=bool), self.edge_up], axis=1)
        return wait, available
