"""Shared machinery of the device scenarios (`collab-exit`, `mec-device`).

Devices receive Poisson arrivals each slot; a task asks for a number of denoising steps of the
generator; the action picks where it runs (a target) and the exit plan. Quality comes from the
ExitProfile (accuracy_ratio at the requested steps); work = steps x base work per step x the
plan's relative FLOPs. Tasks are decided in (slot, device, arrival) order; slots without tasks
are simulated and skipped. Subclasses define the targets, their latency and their queues.
"""
from __future__ import annotations

from abc import abstractmethod

import numpy as np
from pydantic import Field, model_validator

from envs.actions import ActionEncoding
from envs.config import FloatRange, IntRange, StrictModel
from envs.core import NetworkState, StepResult, VectorCore
from envs.observation import ObsField
from envs.profile import ExitProfile, load_profile, quality_table
from envs.radio import path_loss_db, rayleigh_evolve, rayleigh_init, shannon_rate_mbit


class TaskConfig(StrictModel):
    arrival_rate: float = Field(0.5, gt=0.0, le=20.0, description="Poisson arrivals per device per slot")
    max_per_device: int = Field(6, ge=1, le=64, description="arrivals above this per device per slot are dropped")
    steps: IntRange = (10, 30)
    work_per_step_gcycles: FloatRange = (0.1024, 0.3072)
    input_mbit: FloatRange = (1.0, 5.0)
    result_mbit: FloatRange = (0.6, 1.0)
    deadline_s: FloatRange | None = (2.0, 8.0)

    @model_validator(mode="after")
    def _positive(self) -> "TaskConfig":
        if self.steps[0] < 1:
            raise ValueError(f"steps must be >= 1, got {list(self.steps)}")
        if self.deadline_s is not None and self.deadline_s[0] <= 0:
            raise ValueError(f"deadline_s must be > 0, got {list(self.deadline_s)}")
        return self


class RadioConfig(StrictModel):
    bandwidth_mhz: float = Field(20.0, gt=0.0, le=1000.0)
    tx_power_w: float = Field(0.2, gt=0.0, le=10.0)
    noise_dbm_per_hz: float = Field(-174.0, ge=-220.0, le=-100.0)
    distance_km: FloatRange = (0.05, 0.5)
    fading_correlation: float = Field(0.9, ge=0.0, lt=1.0, description="Gauss-Markov correlation per slot")

    @model_validator(mode="after")
    def _positive_distance(self) -> "RadioConfig":
        if self.distance_km[0] <= 0:
            raise ValueError(f"distance_km must be > 0, got {list(self.distance_km)}")
        return self


class RewardConfig(StrictModel):
    quality_weight: float = Field(1.0, ge=0.0)
    latency_weight: float = Field(0.1, ge=0.0, description="per second of latency")
    miss_penalty: float = Field(1.0, ge=0.0, description="per missed deadline")


class DeviceScenarioConfig(StrictModel):
    family: str = Field("default", min_length=1, description="preset family name (a label)")
    n_devices: int = Field(10, ge=1, le=1000)
    slots: int = Field(100, ge=1, le=100_000)
    slot_s: float = Field(1.0, gt=0.0)
    device_gcycles: FloatRange = (2.0, 5.0)
    tasks: TaskConfig = TaskConfig()
    radio: RadioConfig = RadioConfig()
    reward: RewardConfig = RewardConfig()
    profile: str | None = Field(None, description="ExitProfile JSON path (default: the shipped profile)")
    plans: list[str] | None = Field(None, description="plans of the profile to offer (default: all)")

    @model_validator(mode="after")
    def _positive_device(self) -> "DeviceScenarioConfig":
        if self.device_gcycles[0] <= 0:
            raise ValueError(f"device_gcycles must be > 0, got {list(self.device_gcycles)}")
        if self.plans is not None and len(self.plans) == 0:
            raise ValueError("plans must name at least one plan (or be omitted for all)")
        return self


class DeviceSlotCore(VectorCore):
    """Slots, arrivals, device queues, the uplink channel and the plan tables; targets are abstract."""

    has_quality = True

    def __init__(self, config: DeviceScenarioConfig, targets: tuple[str, ...], num_envs: int = 1,
                 seed: int | None = None, profile: ExitProfile | None = None):
        super().__init__(num_envs, seed)
        self.config = config
        self.has_deadlines = config.tasks.deadline_s is not None
        self.profile = profile or load_profile(config.profile)
        plans = self.profile.subset(config.plans)
        self.encoding = ActionEncoding(targets, tuple(p.name for p in plans))
        self.plan_flops = np.array([p.relative_flops for p in plans])
        self.quality_by_steps = quality_table(plans, config.tasks.steps[1])
        n_targets, n_plans = len(targets), len(plans)
        every = np.arange(n_targets * n_plans)
        self._all_targets, self._all_plans = (x[None, :] for x in self.encoding.decode(every))

        B, D, K = num_envs, config.n_devices, config.tasks.max_per_device
        self.capacity_per_slot = D * K
        self.slot = np.zeros(B, dtype=np.int64)
        self.ptr = np.zeros(B, dtype=np.int64)
        self.n_tasks = np.zeros(B, dtype=np.int64)
        self.task_device = np.zeros((B, D * K), dtype=np.int64)
        self.task = {name: np.zeros((B, D * K)) for name in self._task_fields()}
        self.device_f = np.zeros((B, D))
        self.device_backlog = np.zeros((B, D))
        self.loss_db = np.zeros((B, D))
        self.fading = np.zeros((B, D), dtype=np.complex128)
        self.full_rate = np.zeros((B, D))  # each device's uplink rate with the whole band, this slot

    # ---- what subclasses provide ----------------------------------------------------------------
    @abstractmethod
    def _reset_network(self, rows: np.ndarray) -> None:
        """Draw the per-episode network (servers, loads) of `rows`."""

    @abstractmethod
    def _end_slot_network(self, rows: np.ndarray) -> None:
        """Drain server queues and evolve server state at the end of a slot."""

    @abstractmethod
    def _latency(self, r: np.ndarray, target: np.ndarray, work: np.ndarray,
                 task: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(latency s, failed) of running the task with `work` on `target`; broadcast over [k] or [k, A]."""

    @abstractmethod
    def _place(self, rows: np.ndarray, target: np.ndarray, work: np.ndarray,
               task: dict[str, np.ndarray]) -> None:
        """Commit the decided tasks of `rows` to the queues they join."""

    @abstractmethod
    def _network_fields(self) -> dict[str, np.ndarray]:
        """Observation fields describing the servers (all copies)."""

    @abstractmethod
    def _target_wait_s(self) -> tuple[np.ndarray, np.ndarray]:
        """([B, T] queued seconds at each target for the current task, [B, T] available)."""

    # ---- slots and tasks -------------------------------------------------------------------------
    def _task_fields(self) -> tuple[str, ...]:
        fields = ("input_mbit", "steps", "work_per_step", "result_mbit")
        return fields + (("deadline_s",) if self.config.tasks.deadline_s is not None else ())

    def reset(self, mask: np.ndarray | None = None) -> None:
        rows = self.rows if mask is None else self.rows[mask]
        if rows.size == 0:
            return
        cfg, k = self.config, rows.size
        self.device_f[rows] = self.rng.uniform(*cfg.device_gcycles, size=(k, cfg.n_devices))
        self.device_backlog[rows] = 0.0
        self.loss_db[rows] = path_loss_db(self.rng.uniform(*cfg.radio.distance_km, size=(k, cfg.n_devices)))
        self.fading[rows] = rayleigh_init(self.rng, (k, cfg.n_devices))
        self._refresh_rates(rows)
        self.slot[rows] = 0
        self._reset_network(rows)
        self._begin_slot(rows)

    def _begin_slot(self, rows: np.ndarray) -> np.ndarray:
        """Draw arrivals of `rows`; slots without tasks pass by. Returns rows whose episode ended."""
        cfg, t = self.config, self.config.tasks
        finished = []
        while rows.size:
            k, D, K = rows.size, cfg.n_devices, t.max_per_device
            counts = np.minimum(self.rng.poisson(t.arrival_rate, size=(k, D)), K)
            arrived = (np.arange(K)[None, None, :] < counts[:, :, None]).reshape(k, D * K)
            order = np.argsort(~arrived, axis=1, kind="stable")  # arrived tasks first, in device order
            self.task_device[rows] = order // K
            self.n_tasks[rows] = counts.sum(axis=1)
            self.ptr[rows] = 0
            shape = (k, D * K)
            self.task["input_mbit"][rows] = self.rng.uniform(*t.input_mbit, size=shape)
            self.task["steps"][rows] = self.rng.integers(t.steps[0], t.steps[1] + 1, size=shape)
            self.task["work_per_step"][rows] = self.rng.uniform(*t.work_per_step_gcycles, size=shape)
            self.task["result_mbit"][rows] = self.rng.uniform(*t.result_mbit, size=shape)
            if t.deadline_s is not None:
                self.task["deadline_s"][rows] = self.rng.uniform(*t.deadline_s, size=shape)
            empty = self.n_tasks[rows] == 0
            if not empty.any():
                break
            rows = rows[empty]
            ended = self._end_slot(rows)
            finished.append(rows[ended])
            rows = rows[~ended]
        return np.concatenate(finished) if finished else np.zeros(0, dtype=np.int64)

    def _end_slot(self, rows: np.ndarray) -> np.ndarray:
        """Close the slot of `rows`; returns a mask of those whose episode is over."""
        cfg = self.config
        self.device_backlog[rows] = np.maximum(
            self.device_backlog[rows] - self.device_f[rows] * cfg.slot_s, 0.0)
        self.fading[rows] = rayleigh_evolve(self.rng, self.fading[rows], cfg.radio.fading_correlation)
        self._refresh_rates(rows)
        self._end_slot_network(rows)
        self.slot[rows] += 1
        return self.slot[rows] >= cfg.slots

    def _current_task(self, r: np.ndarray) -> dict[str, np.ndarray]:
        p = self.ptr[r]
        task = {name: values[r, p] for name, values in self.task.items()}
        task["device"] = self.task_device[r, p]
        return task

    def _refresh_rates(self, rows: np.ndarray) -> None:
        """Channels change once a slot: compute every device's full-band rate then, not per task."""
        radio = self.config.radio
        self.full_rate[rows] = shannon_rate_mbit(radio.bandwidth_mhz * 1e6, radio.tx_power_w,
                                                 self.loss_db[rows], self.fading[rows], radio.noise_dbm_per_hz)

    def uplink_rate_mbit(self, r: np.ndarray, device: np.ndarray,
                         bandwidth_share: np.ndarray | float = 1.0) -> np.ndarray:
        if np.isscalar(bandwidth_share) and bandwidth_share == 1.0:
            return self.full_rate[r, device]
        radio = self.config.radio
        bandwidth = radio.bandwidth_mhz * 1e6 * bandwidth_share
        return shannon_rate_mbit(bandwidth, radio.tx_power_w, self.loss_db[r, device],
                                 self.fading[r, device], radio.noise_dbm_per_hz)

    def _work(self, task: dict[str, np.ndarray], plan: np.ndarray) -> np.ndarray:
        return task["steps"] * task["work_per_step"] * self.plan_flops[plan]

    def _outcome(self, r: np.ndarray, target, plan, task):
        """(reward, latency, quality, missed, work) of actions (target, plan); broadcasts like `_latency`."""
        w = self.config.reward
        work = self._work(task, plan)
        latency, failed = self._latency(r, target, work, task)
        quality = np.where(failed, 0.0, self.quality_by_steps[plan, task["steps"].astype(np.int64)])
        missed = failed | (latency > task["deadline_s"]) if self.has_deadlines else failed
        reward = w.quality_weight * quality - w.latency_weight * latency - w.miss_penalty * missed
        return reward, latency, quality, missed, work

    # ---- the VectorCore interface ---------------------------------------------------------------
    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        rows = self.rows if active is None else self.rows[active]
        target, plan = self.encoding.decode(np.asarray(actions, dtype=np.int64)[rows])
        task = self._current_task(rows)
        reward, latency, quality, missed, work = self._outcome(rows, target, plan, task)
        self._place(rows, target, work, task)
        done = self._advance(rows)
        return self._result(rows, reward, latency, done, quality, missed)

    def _advance(self, rows: np.ndarray) -> np.ndarray:
        self.ptr[rows] += 1
        slot_end = self.ptr[rows] >= self.n_tasks[rows]
        if not slot_end.any():
            return np.zeros(rows.size, dtype=bool)
        ended = rows[slot_end]
        over = self._end_slot(ended)
        finished = np.concatenate([ended[over], self._begin_slot(ended[~over])])
        self.ptr[finished] = 0  # finished copies keep a valid (unused) task until they are reset
        return np.isin(rows, finished)

    def task_fields(self) -> list:
        """Observation fields every device scenario shares (the task, its device, the plans)."""
        n_plans = len(self.encoding.plans)
        fields = [ObsField("input_mbit", 1, 5.0, "task input size"),
                  ObsField("steps", 1, 30.0, "requested denoising steps"),
                  ObsField("work_per_step_gcycles", 1, 0.3, "work per step of the full model"),
                  ObsField("result_mbit", 1, 1.0, "result size")]
        if self.has_deadlines:
            fields.append(ObsField("deadline_s", 1, 8.0, "deadline of the task"))
        fields += [ObsField("device_gcycles", 1, 5.0, "compute of the task's device"),
                   ObsField("device_wait_s", 1, 5.0, "queued work on the device, seconds"),
                   ObsField("uplink_mbit_s", 1, 100.0, "the device's uplink rate now"),
                   ObsField("plan_quality", n_plans, 1.0, "accuracy_ratio of each plan at the requested steps"),
                   ObsField("plan_flops", n_plans, 1.0, "relative FLOPs of each plan")]
        return fields

    def observe(self) -> np.ndarray:
        task = self._current_task(self.rows)
        device = task["device"]
        values = {
            "input_mbit": task["input_mbit"], "steps": task["steps"],
            "work_per_step_gcycles": task["work_per_step"], "result_mbit": task["result_mbit"],
            "device_gcycles": self.device_f[self.rows, device],
            "device_wait_s": self.device_backlog[self.rows, device] / self.device_f[self.rows, device],
            "uplink_mbit_s": self.uplink_rate_mbit(self.rows, device),
            "plan_quality": self.quality_by_steps[:, task["steps"].astype(np.int64)].T,
            "plan_flops": np.broadcast_to(self.plan_flops, (self.num_envs, self.plan_flops.size)),
        }
        if self.has_deadlines:
            values["deadline_s"] = task["deadline_s"]
        values.update(self._network_fields())
        return self.layout.build(self.num_envs, **values)

    def network_state(self) -> NetworkState:
        wait, available = self._target_wait_s()
        local = np.zeros(self.num_envs, dtype=np.int64)

        def rewards() -> np.ndarray:
            r = self.rows[:, None]
            task = {name: value[:, None] for name, value in self._current_task(self.rows).items()}
            return self._outcome(r, self._all_targets, self._all_plans, task)[0]

        return NetworkState(self.encoding, wait, local, available, rewards, self.context_key())

    def mean_episode_decisions(self) -> float:
        cfg = self.config
        return cfg.slots * cfg.n_devices * cfg.tasks.arrival_rate
