"""Hindsight credit (ours, dedgeai only): a decision is charged the waits it causes.

With `share` s in (0, 1], a share s of every wait behind a task placed at most `horizon` slots
earlier is charged to the decision that placed it instead of the one that suffered it
(`envs/credit.py`); every episode's total is unchanged. A transition's reward is final only once
`horizon` slots have passed, so transitions wait in the runner, per episode, and reach the
learner that many slots late.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from envs.config import ConfigError, StrictModel
from policies.extensions import Extension


class HindsightCreditOptions(StrictModel):
    share: float = Field(gt=0.0, le=1.0, description="share of every wait charged to the decision that caused it")
    horizon: int = Field(2, ge=0, description="slots back a wait is charged (1000: the whole episode)")


class CreditedRewards:
    """Holds closed transitions by episode until their credit is final, then releases them with it."""

    def __init__(self, runner, options: HindsightCreditOptions):
        self.runner, self.share, self.horizon = runner, options.share, options.horizon
        self.awaiting: dict[int, list[dict]] = {}
        self.credited: dict[int, tuple[np.ndarray, int]] = {}   # episode -> (rewards, final count)

    def _credit(self, row: int) -> tuple[np.ndarray, int]:
        ledger = self.runner.core
        return ledger.credited_rewards(row, self.share, self.horizon), ledger.final_decisions(row, self.horizon)

    def on_episode_end(self, row: int, episode: int) -> None:
        self.credited[episode] = self._credit(row)

    def reset(self) -> None:
        self.awaiting, self.credited = {}, {}

    def process(self, closed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Park `closed` by episode; -> every parked transition whose credit is now final."""
        runner = self.runner
        episode = closed["episode"]
        for ep in np.unique(episode):
            mine = episode == ep
            self.awaiting.setdefault(int(ep), []).append({k: v[mine] for k, v in closed.items()})
        for r in np.flatnonzero(runner.active):      # episodes under way: their first slots are final
            ep, final = int(runner.ep_start[r]), runner.core.final_decisions(r, self.horizon)
            parked = self.awaiting.get(ep)
            # Re-credit only when a parked transition has become final (a slot has closed).
            if parked and any((c["index"] < final).any() for c in parked):
                self.credited[ep] = self._credit(r)
        parts = []
        for ep, (rewards, exact) in self.credited.items():
            chunks = self.awaiting.pop(ep, None)
            if not chunks:
                continue
            waiting = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
            final = waiting["index"] < exact
            if not final.all():
                self.awaiting[ep] = [{k: v[~final] for k, v in waiting.items()}]
            part = {k: v[final] for k, v in waiting.items()}
            part["rew"] = rewards[part["index"]].astype(np.float32)
            parts.append(part)
        self.credited = {}
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class HindsightCredit(Extension):
    name = "hindsight_credit"

    def __init__(self, options: HindsightCreditOptions):
        self.options = options

    def check(self, scenario) -> None:
        from envs.scenarios import make_core

        self.wrap_core(make_core(scenario, 1, 0))

    def wrap_core(self, core):
        from envs.credit import PlacementLedger

        try:
            return PlacementLedger(core)
        except NotImplementedError as e:
            raise ConfigError(f"training.hindsight_credit needs a scenario with hindsight credit: {e}") from e

    def reward_processor(self, runner) -> CreditedRewards:
        return CreditedRewards(runner, self.options)
