"""The `dedgeai` scenario: the LAD-TS system model of Xu et al. (DEdgeAI), vectorised.

B = 20 base stations with one edge server each. Every slot each BS receives U{1..50} tasks,
decided in (slot, BS, position) order; the action is the edge server that runs the task:

    D = [a != b] d / r_a + c q / f_a + o / r_a + (Q_a(t) + Qbef_a(t)) / f_a
    Q_a(t+1) = max(Q_a(t) + Qbef_a(t) - f_a * slot, 0)

Two modes:
- `faithful`, what the public code does: the required steps q, the work per step c and the
  result size o are drawn once (legacy NumPy seed 1) and indexed by the task's position in the
  slot; Qbef is not observed; only the first `slots - 1` slots are decided (the code's loop is
  `range(time_slots - 1)`).
- `corrected`: q, c, o drawn per task; Qbef observed; every slot decided.

`caused_wait` is the arithmetic of hindsight credit (ours, not the paper's; the ledger that
uses it wraps this core: envs/credit.py).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from envs.actions import ActionEncoding
from envs.config import FloatRange, IntRange, StrictModel
from envs.core import NetworkState, StepResult, VectorCore
from envs.observation import ObservationLayout, ObsField


class DedgeaiConfig(StrictModel):
    scenario: Literal["dedgeai"] = "dedgeai"
    mode: Literal["faithful", "corrected"] = "faithful"
    form: Literal["shared", "multi-agent"] = Field(
        "shared", description="shared: one policy, BS identity observed; multi-agent: one agent per BS")
    n_bs: int = Field(20, ge=2, le=256, description="base stations, one edge server each")
    slots: int = Field(60, ge=2, le=100_000, description="slots per episode")
    slot_s: float = Field(1.0, gt=0.0, description="slot length, seconds")
    max_tasks: int = Field(50, ge=1, le=1000, description="tasks per BS per slot ~ U{1..max_tasks}")
    input_mbit: FloatRange = (2.0, 5.0)
    steps: IntRange = (1, 14)
    work_per_step_gcycles: FloatRange = (0.1024, 0.3072)
    result_mbit: FloatRange = (0.6, 1.0)
    capacity_gcycles: IntRange = (10, 50)
    capacity_seed: int = Field(2, ge=0, description="legacy NumPy seed of the ES capacities")
    capacities: list[float] | None = Field(None, description="explicit ES capacities (Gcycles/s)")
    rate_mbit: IntRange = (400, 500)
    rate_seed: int = Field(5, ge=0, description="legacy NumPy seed of the BS-to-BS rates")
    position_seed: int = Field(1, ge=0, description="faithful mode: legacy seed of q, c, o per position")
    episode_stream: Literal["public", "generator"] = Field(
        "generator", description="public: draw episodes from one legacy NumPy stream in the public "
        "code's order (unseeded = exactly its stream); generator: a batched NumPy Generator (fast)")

    @model_validator(mode="after")
    def _check(self) -> "DedgeaiConfig":
        if self.steps[0] < 1:
            raise ValueError(f"steps must be >= 1, got {list(self.steps)}")
        if self.capacities is not None:
            if len(self.capacities) != self.n_bs:
                raise ValueError(f"capacities needs n_bs={self.n_bs} values, got {len(self.capacities)}")
            if min(self.capacities) <= 0:
                raise ValueError("capacities must all be > 0")
        elif self.capacity_gcycles[0] <= 0:
            raise ValueError(f"capacity_gcycles must be > 0, got {list(self.capacity_gcycles)}")
        if self.rate_mbit[0] <= 0:
            raise ValueError(f"rate_mbit must be > 0, got {list(self.rate_mbit)}")
        return self

    @property
    def decided_slots(self) -> int:
        return self.slots - 1 if self.mode == "faithful" else self.slots

    def es_capacities(self) -> np.ndarray:
        if self.capacities is not None:
            return np.asarray(self.capacities, dtype=np.float64)
        low, high = self.capacity_gcycles
        return np.random.RandomState(self.capacity_seed).randint(low, high + 1, size=self.n_bs).astype(np.float64)

    def bs_rates(self) -> np.ndarray:
        low, high = self.rate_mbit
        return np.random.RandomState(self.rate_seed).randint(low, high + 1, size=self.n_bs).astype(np.float64)

    def position_tasks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faithful mode: (work per step, steps, result Mbit) per position, as the public code draws them."""
        n = self.max_tasks
        c = np.random.RandomState(self.position_seed).uniform(*self.work_per_step_gcycles, size=n)
        q = np.random.RandomState(self.position_seed).randint(self.steps[0], self.steps[1] + 1, size=n)
        o = np.random.RandomState(self.position_seed).uniform(*self.result_mbit, size=n)
        return c, q.astype(np.float64), o


def dedgeai_layout(config: DedgeaiConfig) -> ObservationLayout:
    n = config.n_bs
    fields = [ObsField("input_mbit", 1, 5.0, "input size d of the task"),
              ObsField("work_gcycles", 1, 4.0, "total work c*q of the task"),
              ObsField("queue_gcycles", n, 100.0, "Q_a(t): work queued at each ES at slot start", per_action=True)]
    if config.mode == "corrected":
        fields.append(ObsField("placed_gcycles", n, 100.0, "Qbef_a(t): work placed this slot", per_action=True))
    if config.form == "shared":
        fields.append(ObsField("bs_onehot", n, 1.0, "the BS the task arrived at", per_action=True))
    return ObservationLayout("dedgeai", tuple(fields))


class DedgeaiCore(VectorCore):
    scenario = "dedgeai"

    def __init__(self, config: DedgeaiConfig, num_envs: int = 1, seed: int | None = None):
        super().__init__(num_envs, seed)
        self.config = config
        self.layout = dedgeai_layout(config)
        self.encoding = ActionEncoding(tuple(f"es{a}" for a in range(config.n_bs)), ("full",))
        self.capacity = config.es_capacities()
        self.rate = config.bs_rates()
        self.faithful = config.mode == "faithful"
        if self.faithful:
            c, q, o = config.position_tasks()
            self.position_work = c * q
            self.position_result = o
        n_b, n_t, B = config.n_bs, config.max_tasks, num_envs
        self.queue = np.zeros((B, n_b))
        self.placed = np.zeros((B, n_b))
        self.slot = np.zeros(B, dtype=np.int64)
        self.bs = np.zeros(B, dtype=np.int64)
        self.pos = np.zeros(B, dtype=np.int64)
        self.counts = np.ones((B, n_b), dtype=np.int64)
        self.input = np.zeros((B, n_b, n_t))
        self.work = np.zeros((B, n_b, n_t))
        self.result = np.zeros((B, n_b, n_t))
        self._onehot = np.eye(n_b, dtype=np.float32)
        if config.episode_stream == "public":
            self._tape_counts = np.ones((B, config.slots, n_b), dtype=np.int64)
            self._tape_input = np.zeros((B, config.slots, n_b, n_t))
        self.seed(seed)
        self.reset()

    # ---- episode and slot bookkeeping ---------------------------------------------------------
    def reset(self, mask: np.ndarray | None = None) -> None:
        rows = self.rows if mask is None else self.rows[mask]
        if rows.size == 0:
            return
        self.queue[rows] = 0.0
        self.placed[rows] = 0.0
        self.slot[rows] = 0
        if self._public_stream is not None:
            self._draw_public_episode(rows)
        self._begin_slot(rows)

    def seed(self, seed: int | None) -> None:
        super().seed(seed)
        self._public_stream = None
        if self.config.episode_stream == "public":
            self._public_stream = PublicEpisodeStream(self.config, seed)

    def get_state(self) -> dict:
        state = super().get_state()
        if self._public_stream is not None:
            state["public_stream"] = self._public_stream.rs.get_state()
        return state

    def set_state(self, state: dict) -> None:
        if (self._public_stream is None) != ("public_stream" not in state):
            raise ValueError("snapshot and core disagree on episode_stream (public vs generator)")
        super().set_state(state)
        if self._public_stream is not None:
            self._public_stream.rs.set_state(state["public_stream"])

    def _draw_public_episode(self, rows: np.ndarray) -> None:
        for row in rows:
            self._tape_counts[row], self._tape_input[row] = next(self._public_stream)

    def _begin_slot(self, rows: np.ndarray) -> None:
        cfg, k = self.config, rows.size
        shape = (k, cfg.n_bs, cfg.max_tasks)
        if self._public_stream is not None:
            slot = self.slot[rows]
            self.counts[rows] = self._tape_counts[rows, slot]
            self.input[rows] = self._tape_input[rows, slot]
        else:
            self.counts[rows] = self.rng.integers(1, cfg.max_tasks + 1, size=(k, cfg.n_bs))
            self.input[rows] = self.rng.uniform(*cfg.input_mbit, size=shape)
        if not self.faithful:
            c = self.rng.uniform(*cfg.work_per_step_gcycles, size=shape)
            q = self.rng.integers(cfg.steps[0], cfg.steps[1] + 1, size=shape)
            self.work[rows] = c * q
            self.result[rows] = self.rng.uniform(*cfg.result_mbit, size=shape)
        self.bs[rows] = 0
        self.pos[rows] = 0

    # ---- the current task ---------------------------------------------------------------------
    def _task(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bs, pos = self.bs[rows], self.pos[rows]
        d = self.input[rows, bs, pos]
        if self.faithful:
            return d, self.position_work[pos], self.position_result[pos]
        return d, self.work[rows, bs, pos], self.result[rows, bs, pos]

    def task_work(self, rows: np.ndarray) -> np.ndarray:
        """Work c*q (Gcycles) of the current task of `rows`."""
        return self._task(rows)[1]

    def _delay(self, target: np.ndarray, d: np.ndarray, work: np.ndarray, o: np.ndarray,
               bs: np.ndarray, queue: np.ndarray, placed: np.ndarray) -> np.ndarray:
        """The LAD-TS delay; `target` is [B] or [B, A] (then task arrays are [B, 1])."""
        f, r = self.capacity[target], self.rate[target]
        transfer = (target != bs) * (d / r)
        return transfer + (work + queue + placed) / f + o / r

    def observe(self) -> np.ndarray:
        d, work, _ = self._task(self.rows)
        values = {"input_mbit": d, "work_gcycles": work, "queue_gcycles": self.queue}
        if not self.faithful:
            values["placed_gcycles"] = self.placed
        if self.config.form == "shared":
            values["bs_onehot"] = self._onehot[self.bs]
        return self.layout.build(self.num_envs, **values)

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        rows = self.rows if active is None else self.rows[active]
        a = np.asarray(actions, dtype=np.int64)[rows]
        d, work, o = self._task(rows)
        q_a, p_a = self.queue[rows, a], self.placed[rows, a]
        delay = self._delay(a, d, work, o, self.bs[rows], q_a, p_a)
        self.placed[rows, a] = p_a + work
        done = self._advance(rows)
        return self._result(rows, reward=-delay, delay_s=delay, done=done)

    def _advance(self, rows: np.ndarray) -> np.ndarray:
        """Move `rows` to their next task; close slots (queue update); return [len(rows)] finished flags."""
        pos = self.pos[rows] + 1
        bs = self.bs[rows]
        bs_end = pos >= self.counts[rows, bs]
        pos[bs_end] = 0
        bs += bs_end
        self.pos[rows], self.bs[rows] = pos, bs
        slot_end = bs >= self.config.n_bs
        done = np.zeros(rows.size, dtype=bool)
        if slot_end.any():
            ended = rows[slot_end]
            served = self.capacity * self.config.slot_s
            self.queue[ended] = np.maximum(self.queue[ended] + self.placed[ended] - served, 0.0)
            self.placed[ended] = 0.0
            self.slot[ended] += 1
            finished = self.slot[ended] >= self.config.decided_slots
            done[np.flatnonzero(slot_end)[finished]] = True
            self._begin_slot(ended[~finished])
            # Finished copies keep a valid (unused) task pointer until they are reset.
            self.bs[ended[finished]] = 0
        return done

    # ---- what heuristics and LAD read -----------------------------------------------------------
    def network_state(self) -> NetworkState:
        wait = (self.queue + self.placed) / self.capacity
        n_b = self.config.n_bs

        def rewards() -> np.ndarray:
            d, work, o = (x[:, None] for x in self._task(self.rows))
            targets = np.arange(n_b)[None, :]
            return -self._delay(targets, d, work, o, self.bs[:, None], self.queue, self.placed)

        return NetworkState(self.encoding, wait, self.bs.copy(),
                            np.ones((self.num_envs, n_b), dtype=bool), rewards, self.context_key())

    def context_key(self) -> np.ndarray:
        cfg = self.config
        return (self.slot * cfg.n_bs + self.bs) * cfg.max_tasks + self.pos

    @property
    def num_context_keys(self) -> int:
        # slots + 1: a finished copy points one slot past the end until it is reset.
        return (self.config.slots + 1) * self.config.n_bs * self.config.max_tasks

    def acting_agent(self) -> np.ndarray:
        return self.bs.copy()

    @property
    def num_agents(self) -> int:
        return self.config.n_bs

    def mean_episode_decisions(self) -> float:
        return self.config.decided_slots * self.config.n_bs * (1 + self.config.max_tasks) / 2


def caused_wait(slot: np.ndarray, server: np.ndarray, work: np.ndarray, capacity: np.ndarray,
                slot_s: float, n_slots: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(waiting suffered, waiting caused) in seconds per task, in decision order, counting only
    the waiting of a task placed at most `horizon` slots after the task it waits for.

    An ES serves its work first come, first served: on the ES's cumulative-work axis task j
    occupies [start_j, end_j), and by the start of slot t the ES has served S_a(t) of it, so task i
    waits (start_i - S_a(t_i)) / f_a, the formula's (Q + Qbef) / f. Task j is what the tasks after it
    wait for: w_j / f_a for each later task of its slot on its ES, and its unserved remainder
    clip(end_j - S_a(t), 0, w_j) / f_a for each task placed there in a later slot t. Summed over
    the tasks, waiting caused equals waiting suffered (within the same horizon). `n_slots` may
    cover only the slots so far: then tasks of slot t are exact once slot t + horizon is complete.
    """
    slot, server, work = np.asarray(slot), np.asarray(server), np.asarray(work, dtype=np.float64)
    n_es, n = capacity.size, work.size
    f = capacity[server]
    by_es = np.lexsort((np.arange(n), server))          # decision order within each ES
    cum = np.cumsum(work[by_es])
    first = np.searchsorted(server[by_es], np.arange(n_es))
    end = np.empty(n)
    end[by_es] = cum - np.concatenate([[0.0], cum])[first][server[by_es]]
    start = end - work

    placed = np.zeros((n_es, n_slots))
    count = np.zeros((n_es, n_slots))
    np.add.at(placed, (server, slot), work)
    np.add.at(count, (server, slot), 1.0)
    arrived = np.hstack([np.zeros((n_es, 1)), np.cumsum(placed, axis=1)])   # placed before slot t
    served = np.zeros((n_es, n_slots))                  # S_a(t): served by the start of slot t
    for t in range(1, n_slots):
        served[:, t] = np.minimum(served[:, t - 1] + capacity * slot_s, arrived[:, t])
    # Work still queued from slots more than `horizon` back is not waited for within the horizon.
    too_old = arrived[server, np.maximum(slot - horizon, 0)]
    suffered = (start - np.maximum(served[server, slot], too_old)) / f

    # Later tasks of the same slot on the same ES.
    group = server * n_slots + slot
    by_group = np.lexsort((np.arange(n), group))
    new_group = np.r_[True, group[by_group][1:] != group[by_group][:-1]]
    rank = np.empty(n)
    rank[by_group] = np.arange(n) - np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    caused = work * (count[server, slot] - 1 - rank)

    # Later slots up to the horizon: S_a is non-decreasing, so j's remainder is w_j until S_a
    # passes start_j (slots before `partial`), end_j - S_a(t) until S_a reaches end_j (before
    # `cleared`), then 0.
    partial = np.empty(n, np.int64)
    cleared = np.empty(n, np.int64)
    for a in np.unique(server):
        mine = server == a
        partial[mine] = np.searchsorted(served[a], start[mine], side="right")
        cleared[mine] = np.searchsorted(served[a], end[mine], side="left")
    zeros = np.zeros((n_es, 1))
    count_cum = np.hstack([zeros, np.cumsum(count, axis=1)])             # sum over t < k
    count_served_cum = np.hstack([zeros, np.cumsum(count * served, axis=1)])
    after = slot + 1
    limit = np.minimum(slot + horizon + 1, n_slots)
    lo = np.minimum(np.maximum(partial, after), limit)
    hi = np.minimum(np.maximum(cleared, lo), limit)
    caused += work * (count_cum[server, lo] - count_cum[server, np.minimum(after, limit)])
    caused += end * (count_cum[server, hi] - count_cum[server, lo])
    caused -= count_served_cum[server, hi] - count_served_cum[server, lo]
    return suffered, caused / f


class PublicEpisodeStream:
    """Episodes (counts [T, n_bs], input Mbit [T, n_bs, max_tasks]) in the public code's draw order.

    The public code's main loop starts from the global NumPy state its environment leaves behind:
    legacy seed 1 (`position_seed`), then the 50 result sizes drawn. Unseeded, that is the stream,
    so its episodes are reproduced exactly; a seed s replaces the 1.
    """

    def __init__(self, config: DedgeaiConfig, seed: int | None):
        self.config = config
        self.rs = np.random.RandomState(config.position_seed if seed is None else seed)
        self.rs.uniform(*config.result_mbit, size=config.max_tasks)

    def __iter__(self) -> "PublicEpisodeStream":
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        config, rs = self.config, self.rs
        counts = np.empty((config.slots, config.n_bs), dtype=np.int64)
        inputs = np.zeros((config.slots, config.n_bs, config.max_tasks))
        for t in range(config.slots):
            counts[t] = rs.randint(1, config.max_tasks + 1, size=config.n_bs)
            for b in range(config.n_bs):
                inputs[t, b, :counts[t, b]] = rs.uniform(*config.input_mbit, size=counts[t, b])
        return counts, inputs
