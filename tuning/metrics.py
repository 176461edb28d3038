"""Transfer metrics (Taylor & Stone 2009, JMLR 10, sec. 2.1) on evaluation learning curves.

A curve is the learning policy's evaluation return (argmax, fixed evaluation episodes of the
target) at target env steps `steps` (decisions), from step 0 (before any target update). Higher
is better. Every metric compares a transfer run with scratch on the same target and seed:

- jumpstart: P_t(0) - P_s(0);
- asymptotic_gain: mean of the last `tail` evaluations, transfer minus scratch;
- auc_norm: the area under the curve normalised to [0, 1] in both axes: returns mapped by the
  references (`low` -> 0, `high` -> 1; we use the random and the greedy heuristic on the same
  evaluation episodes), steps by the budget; 1.0 = the high reference from the first step;
- transfer_ratio: (AUC_t - AUC_s) / |AUC_s| of the normalised areas (> 0: transfer accumulated more);
- steps to threshold: the first evaluated step where the curve reaches
  thr = P_s(0) + 0.9 (P_s(T) - P_s(0)), P_s(T) scratch's final (mean of the last `tail`);
  never reached = None (censored, reported "> budget", never 0).
Source training is not counted in the target steps (amortised over every target); its env steps
are logged beside.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD_SHARE = 0.9
TAIL = 3


@dataclass
class Curve:
    steps: np.ndarray       # target env steps, ascending, steps[0] = 0
    values: np.ndarray      # evaluation return at each step

    @classmethod
    def of(cls, points: list[dict], key: str = "eval_return") -> "Curve":
        points = sorted(points, key=lambda p: p["step"])
        steps = np.array([p["step"] for p in points], np.float64)
        values = np.array([p[key] for p in points], np.float64)
        if steps.size == 0 or steps[0] != 0:
            raise ValueError("a learning curve needs its step-0 evaluation (before any target update)")
        return cls(steps, values)

    def final(self, tail: int = TAIL) -> float:
        return float(self.values[-tail:].mean())

    def first_step_reaching(self, level: float, higher_is_better: bool = True) -> float | None:
        hit = self.values >= level if higher_is_better else self.values <= level
        return float(self.steps[np.argmax(hit)]) if hit.any() else None

    def normalised_area(self, low: float, high: float, budget: float) -> float:
        """Mean normalised return over [0, budget] (trapezoids; the last value held to the budget)."""
        span = high - low if abs(high - low) > 1e-12 else 1.0
        y = (self.values - low) / span
        x = self.steps
        if x[-1] < budget:
            x, y = np.append(x, budget), np.append(y, y[-1])
        keep = x <= budget
        x, y = x[keep], y[keep]
        return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / budget)


def threshold(scratch: Curve, tail: int = TAIL) -> float:
    start = float(scratch.values[0])
    return start + THRESHOLD_SHARE * (scratch.final(tail) - start)


def transfer_metrics(transfer: Curve, scratch: Curve, low: float, high: float,
                     tail: int = TAIL) -> dict[str, float | None | bool]:
    """The DESIGN's `transfer` keys (but source/target/...): one transfer run against scratch."""
    budget = float(max(transfer.steps[-1], scratch.steps[-1]))
    level = threshold(scratch, tail)
    auc_t = transfer.normalised_area(low, high, budget)
    auc_s = scratch.normalised_area(low, high, budget)
    steps_t = transfer.first_step_reaching(level)
    steps_s = scratch.first_step_reaching(level)
    return {"jumpstart": float(transfer.values[0] - scratch.values[0]),
            "asymptotic_gain": transfer.final(tail) - scratch.final(tail),
            "auc_norm": auc_t, "scratch_auc_norm": auc_s,
            "transfer_ratio": (auc_t - auc_s) / abs(auc_s) if abs(auc_s) > 1e-12 else None,
            "threshold": level, "steps_to_threshold": steps_t, "scratch_steps_to_threshold": steps_s,
            "censored": steps_t is None, "final_return": transfer.final(tail), "budget_steps": budget}


def steps_to_scratch_final(transfer: Curve, scratch: Curve, higher_is_better: bool,
                           tail: int = TAIL) -> tuple[float | None, float | None]:
    """(transfer's, scratch's) first step at scratch's final level (e.g. serve-sim latency, lower
    is better): how soon each reaches where scratch ends."""
    level = scratch.final(tail)
    return (transfer.first_step_reaching(level, higher_is_better),
            scratch.first_step_reaching(level, higher_is_better))
