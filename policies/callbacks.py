"""What a training run tells its callbacks: `TrainProgress` after every iteration, and the hooks of
`TrainingCallbacks` (the CLI's progress bar, the MLflow recorder, a Tune trial's recorder). Apart
from `policies/training.py` so that recorders need not import the training loop."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainProgress:
    """Where a run is, after an iteration."""
    iteration: int
    episodes: int
    episodes_total: int
    decisions: int
    decisions_expected: float       # the run's decisions when all its episodes are done
    elapsed_s: float                # this process's wall time on the run
    last10: float | None            # mean delay (s) or reward per decision of the last 10 episodes
    last10_is_delay: bool


class TrainingCallbacks:
    """How a run is recorded. Every hook does nothing unless overridden; `state` is the run's
    `run.json` (a callback may keep what it needs to resume there, e.g. its run id)."""

    def on_start(self, cfg, scenario_config, state: dict, resumed_from: int | None) -> None:
        pass

    def on_algorithm(self, algo) -> None:
        """The built (and possibly restored or initialised) RLlib algorithm, before the first iteration."""

    def on_iteration(self, progress: TrainProgress, metrics: dict[str, float]) -> None:
        pass

    def on_message(self, message: str) -> None:
        pass

    def on_end(self, result: dict, run_dir: Path) -> None:
        """The run is done: `result` is train()'s return value (a callback may add keys)."""

    def on_failure(self, error: BaseException) -> None:
        pass
