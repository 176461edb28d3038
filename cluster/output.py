"""Command output: progress to stderr, results to stdout; with --json exactly one JSON object last."""
from __future__ import annotations

import json
import math
import sys
from typing import Any

from policies.callbacks import TrainingCallbacks


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _clean(value: Any) -> Any:
    """NaN is not JSON: report an undefined figure as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return _clean(value.item())
    return value


def emit(result: dict, as_json: bool, table: str | None = None) -> None:
    """Print `table` (or key: value lines) for people, or `result` as one JSON line for programs."""
    result = _clean(result)
    if as_json:
        print(json.dumps(result), flush=True)
        return
    if table is not None:
        print(table, flush=True)
        return
    width = max((len(k) for k in result), default=0)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


class TrainingProgressBar(TrainingCallbacks):
    """A training callback: a tqdm bar on stderr over the run's expected decisions, with the
    episodes done, the decision rate, the time left and the last-10 figure beside it."""

    def __init__(self, label: str = "train"):
        self.label, self.bar = label, None

    def on_start(self, cfg, scenario_config, state: dict, resumed_from) -> None:
        self.name = cfg.name()

    def on_message(self, message: str) -> None:
        (self.bar.write if self.bar is not None else progress)(message)

    def on_iteration(self, run, metrics: dict) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=int(run.decisions_expected), unit="dec", unit_scale=True, file=sys.stderr,
                            desc=self.name, dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
        self.bar.update(max(0, run.decisions - self.bar.n))
        last = "" if run.last10 is None else (f", last-10 delay {run.last10:.2f} s" if run.last10_is_delay
                                             else f", last-10 reward {run.last10:.4f}")
        self.bar.set_postfix_str(f"episodes {run.episodes}/{run.episodes_total}{last}", refresh=False)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_end(self, result: dict, run_dir) -> None:
        self._close()

    def on_failure(self, error: BaseException) -> None:
        self._close()
