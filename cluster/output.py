"""Command output: progress to stderr, results to stdout; with --json exactly one JSON object last."""
from __future__ import annotations

import json
import math
import sys
from typing import Any


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
