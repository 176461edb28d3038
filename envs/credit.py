"""Hindsight credit (ours, not the paper's): a ledger of placements around the dedgeai core.

The queue term of a task's delay is waiting behind work other tasks placed. `PlacementLedger`
wraps a `DedgeaiCore`, records every placement (slot, server, work, delay) as it is stepped, and
re-credits an episode: a share of every wait a task suffers behind a task placed at most `horizon`
slots before it is charged to that earlier decision instead (`envs.dedgeai.caused_wait`), so
every episode's total is unchanged and a decision is told what it costs the tasks after it.
Everything else is the wrapped core's.
"""
from __future__ import annotations

import numpy as np

from envs.core import StepResult
from envs.dedgeai import DedgeaiCore, caused_wait


class PlacementLedger:
    """A `DedgeaiCore` that keeps what `credited_rewards` needs (wrap it before any step)."""

    def __init__(self, core):
        if not isinstance(core, DedgeaiCore):
            raise NotImplementedError(f"scenario {core.scenario!r} has no hindsight credit (dedgeai has)")
        self.core = core
        cfg = core.config
        size = (core.num_envs, cfg.decided_slots * cfg.n_bs * cfg.max_tasks)
        self.ledger = {"n": np.zeros(core.num_envs, np.int64), "slot": np.zeros(size, np.int64),
                       "server": np.zeros(size, np.int64), "work": np.zeros(size), "delay": np.zeros(size)}

    def __getattr__(self, name):
        return getattr(self.core, name)

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        core = self.core
        rows = core.rows if active is None else core.rows[active]
        slot, work = core.slot[rows].copy(), core.task_work(rows)
        result = core.step(actions, active)
        led, i = self.ledger, self.ledger["n"][rows]
        led["slot"][rows, i], led["server"][rows, i] = slot, np.asarray(actions, dtype=np.int64)[rows]
        led["work"][rows, i], led["delay"][rows, i] = work, result.delay_s[rows]
        led["n"][rows] = i + 1
        return result

    def reset(self, mask: np.ndarray | None = None) -> None:
        self.core.reset(mask)
        self.ledger["n"][self.core.rows if mask is None else self.core.rows[mask]] = 0

    def get_state(self) -> dict:
        return {**self.core.get_state(), "ledger": {k: v.copy() for k, v in self.ledger.items()}}

    def set_state(self, state: dict) -> None:
        self.core.set_state(state)
        for name, saved in state.get("ledger", {}).items():
            self.ledger[name][...] = saved

    def final_decisions(self, row: int, horizon: int) -> int:
        """How many of copy `row`'s first decisions this episode have a final credit: those
        `horizon` slots back (all, once the episode has ended). Call before the copy is reset."""
        n = int(self.ledger["n"][row])
        if self.core.slot[row] >= self.core.config.decided_slots:
            return n
        return int(np.searchsorted(self.ledger["slot"][row, :n], self.core.slot[row] - horizon))

    def credited_rewards(self, row: int, caused_share: float, horizon: int) -> np.ndarray:
        """Copy `row`'s episode so far re-credited, in decision order (final for the first
        `final_decisions`): `caused_share` of every wait within `horizon` slots charged to the
        decision that caused it. Call before the copy is reset."""
        led, n, core = self.ledger, int(self.ledger["n"][row]), self.core
        slot, server, work = led["slot"][row, :n], led["server"][row, :n], led["work"][row, :n]
        n_slots = min(int(core.slot[row]) + 1, core.config.decided_slots)
        suffered, caused = caused_wait(slot, server, work, core.capacity, core.config.slot_s, n_slots, horizon)
        return -(led["delay"][row, :n] + caused_share * (caused - suffered))
