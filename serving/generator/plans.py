"""Exit plans: named per-denoising-step exit schedules (DESIGN.md, Interfaces).

A plan is a list of exits spread evenly over the denoising steps, first (noisiest) to last:
`["full", "exit1"]` runs the full depth for the first half of the steps and exit 1 for the rest.
Every exit also gives a uniform plan of the same name (`exit1`, ..., `full`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from envs.config import ConfigError

PLAN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class ExitPlan:
    name: str
    schedule: tuple[str, ...]

    def exit_at(self, step: int, total_steps: int) -> str:
        """The exit used at denoising step `step` (0 = noisiest) of `total_steps`."""
        return self.schedule[min(step * len(self.schedule) // total_steps, len(self.schedule) - 1)]

    def exits(self, total_steps: int) -> list[str]:
        return [self.exit_at(i, total_steps) for i in range(total_steps)]

    @property
    def description(self) -> str:
        if len(self.schedule) == 1:
            return f"every step at {self.schedule[0]}"
        return "steps split evenly, noisiest first: " + " -> ".join(self.schedule)

    def relative_cost(self, exit_cost: dict[str, float]) -> float:
        """Mean per-step cost given each exit's cost (exact when the step count divides evenly)."""
        return sum(exit_cost[e] for e in self.schedule) / len(self.schedule)


def build_plans(exit_names: list[str], mixed: dict[str, list[str]]) -> dict[str, ExitPlan]:
    """The uniform plan of every exit, then the mixed plans, validated against the model's exits."""
    plans = {name: ExitPlan(name, (name,)) for name in exit_names}
    for name, schedule in mixed.items():
        if not PLAN_NAME.match(name):
            raise ConfigError(f"plan name {name!r} must match {PLAN_NAME.pattern}")
        bad = [e for e in schedule if e not in exit_names]
        if bad or not schedule:
            raise ConfigError(f"plan {name!r}: exits must be from {exit_names}, got {list(schedule)}")
        plans[name] = ExitPlan(name, tuple(schedule))
    return plans
