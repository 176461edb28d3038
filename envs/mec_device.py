"""The `mec-device` scenario: devices and one MEC server under compute and bandwidth limits
(Zhou et al., IEEE Networking Letters 2024, reconstructed from its abstract).

- One MEC server (50 Gcycles/s) shared by processor sharing: a task that arrives while n jobs
  run gets F / (n + 1).
- 8 devices (U[2, 5] Gcycles/s); those uploading share 20 MHz equally: a task that starts its
  upload while n others upload gets W / (n + 1).
- Per task: run locally, offload, or (optionally) split: a fraction of the steps offloaded and
  the rest run locally in parallel. Reward = -latency.
- Rates and shares are frozen when the task starts (what the device can know then); the
  reconstruction says so rather than simulating every later contention change.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from envs.device_core import DeviceScenarioConfig, DeviceSlotCore, RewardConfig, TaskConfig
from envs.observation import ObservationLayout, ObsField
from envs.profile import FULL_PLAN, ExitProfile

ACTIVE_SLOTS = 64  # in-flight uploads/jobs remembered per copy (a ring buffer)


class MecDeviceConfig(DeviceScenarioConfig):
    scenario: Literal["mec-device"] = "mec-device"
    family: str = "default"
    n_devices: int = 8
    mec_gcycles: float = Field(50.0, gt=0.0)
    split_fractions: list[float] = Field(default_factory=list,
                                         description="offloaded fractions of a split task, each in (0, 1)")
    plans: list[str] | None = [FULL_PLAN]
    tasks: TaskConfig = TaskConfig(deadline_s=None)
    reward: RewardConfig = RewardConfig(quality_weight=0.0, latency_weight=1.0, miss_penalty=0.0)

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < f < 1.0 for f in value):
            raise ValueError(f"split_fractions must each be in (0, 1), got {value}")
        return value


class MecDeviceCore(DeviceSlotCore):
    scenario = "mec-device"

    def __init__(self, config: MecDeviceConfig, num_envs: int = 1, seed: int | None = None,
                 profile: ExitProfile | None = None):
        targets = ("local", "mec") + tuple(f"split{round(f * 100)}" for f in config.split_fractions)
        super().__init__(config, targets, num_envs, seed, profile)
        self.offload_fraction = np.array([0.0, 1.0] + list(config.split_fractions))
        self.layout = ObservationLayout("mec-device", tuple(self.task_fields() + [
            ObsField("mec_jobs", 1, 10.0, "jobs running on the MEC server"),
            ObsField("uploads", 1, 5.0, "uploads in progress"),
        ]))
        self.upload_end = np.zeros((num_envs, ACTIVE_SLOTS))
        self.job_end = np.zeros((num_envs, ACTIVE_SLOTS))
        self.ring = np.zeros(num_envs, dtype=np.int64)
        self.reset()

    def _now(self, r) -> np.ndarray:
        return self.slot[r] * self.config.slot_s

    def _active(self, r, ends: np.ndarray) -> np.ndarray:
        return (ends[r] > self._now(r)[..., None]).sum(axis=-1)

    def _reset_network(self, rows: np.ndarray) -> None:
        self.upload_end[rows] = 0.0
        self.job_end[rows] = 0.0
        self.ring[rows] = 0

    def _end_slot_network(self, rows: np.ndarray) -> None:
        """In-flight work is tracked by end times; nothing to drain."""

    def _shares(self, r):
        """Upload rate and MEC compute a new offload would get now (frozen for its lifetime)."""
        uploads = self._active(r, self.upload_end) + 1
        jobs = self._active(r, self.job_end) + 1
        return uploads, self.config.mec_gcycles / jobs

    def _offload_times(self, r, fraction, work, task):
        uploads, mec_share = self._shares(r)
        rate = self.uplink_rate_mbit(r, task["device"], 1.0 / uploads)
        upload = fraction * task["input_mbit"] / rate
        compute = fraction * work / mec_share
        return upload, compute, task["result_mbit"] / rate

    def _latency(self, r, target, work, task):
        fraction = self.offload_fraction[target]
        device = task["device"]
        local = (self.device_backlog[r, device] + (1.0 - fraction) * work) / self.device_f[r, device]
        upload, compute, download = self._offload_times(r, fraction, work, task)
        remote = np.where(fraction > 0, upload + compute + download, 0.0)
        latency = np.where(fraction < 1, np.maximum(local, remote), remote)
        return latency, np.zeros(np.shape(latency), dtype=bool)

    def _place(self, rows, target, work, task) -> None:
        fraction = self.offload_fraction[target]
        self.device_backlog[rows, task["device"]] += (1.0 - fraction) * work
        off = fraction > 0
        if off.any():
            r = rows[off]
            sub = {k: v[off] for k, v in task.items()}
            upload, compute, _ = self._offload_times(r, fraction[off], work[off], sub)
            now, slot = self._now(r), self.ring[r] % ACTIVE_SLOTS
            self.upload_end[r, slot] = now + upload
            self.job_end[r, slot] = now + upload + compute
            self.ring[r] += 1

    def _network_fields(self) -> dict[str, np.ndarray]:
        return {"mec_jobs": self._active(self.rows, self.job_end),
                "uploads": self._active(self.rows, self.upload_end)}

    def _target_wait_s(self) -> tuple[np.ndarray, np.ndarray]:
        device = self.task_device[self.rows, self.ptr]
        local_wait = self.device_backlog[self.rows, device] / self.device_f[self.rows, device]
        jobs = self._active(self.rows, self.job_end)
        # Under processor sharing nothing waits; more jobs means a smaller share: n / F seconds per Gcycle.
        mec_wait = jobs / self.config.mec_gcycles
        wait = np.column_stack([local_wait] + [mec_wait] * (len(self.encoding.targets) - 1))
        return wait, np.ones_like(wait, dtype=bool)
