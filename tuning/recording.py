"""MLflow records of an experiment: one parent run, a child run per trial, in `aigc-edge/transfer`.

Children are nested by `parent_run_id` (the UI lists them under the parent, within the same
experiment). A trial logs its own child (one `log_batch` per evaluation, step = target env
steps) and keeps the child's id in its run state, so a resumed trial continues its own run; a
trial restarted without a checkpoint marks its stale run KILLED and opens a new one. The driver
closes every child left RUNNING (a SIGKILL) on a resume and in `finally`, then the parent.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from policies.tracking import EXPERIMENT_TRANSFER, configure_mlflow, start_tracked_run

PARENT_FILE = "experiment.json"


def client():
    return configure_mlflow().MlflowClient()


def open_parent(root: Path, name: str, config: dict, resume: bool) -> str:
    """The experiment's parent run: resumed from `root/experiment.json` with `resume`, else new."""
    record = root / PARENT_FILE
    if resume and record.is_file():
        run_id = json.loads(record.read_text())["parent_run_id"]
        client().update_run(run_id, status="RUNNING")
        return run_id
    run_id = start_tracked_run(EXPERIMENT_TRANSFER, config, run_name=name, tags={"kind": "experiment"})
    record.write_text(json.dumps({"parent_run_id": run_id, "name": name}))
    return run_id


def close_running_children(parent_run_id: str, status: str = "KILLED") -> int:
    """End the children a killed trial left RUNNING; -> how many."""
    c = client()
    experiment_id = c.get_run(parent_run_id).info.experiment_id
    stale = c.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                           "and attributes.status = 'RUNNING'", max_results=10_000)
    for run in stale:
        c.set_terminated(run.info.run_id, status)
    return len(stale)


def end_parent(parent_run_id: str, status: str) -> None:
    client().set_terminated(parent_run_id, status)


def open_child(state: dict, resumed: bool, parent_run_id: str | None, run_name: str,
               params: dict, tags: dict[str, str], config: dict) -> str:
    """The trial's child run: its own (from `state`) when resumed from a checkpoint, else a new one
    (a stale one in `state` is marked KILLED first)."""
    c = client()
    old = state.get("mlflow_run_id")
    if old and resumed:
        c.update_run(old, status="RUNNING")
        return old
    if old:
        c.set_terminated(old, "KILLED")
    run_id = start_tracked_run(EXPERIMENT_TRANSFER, config, seed=params.get("seed"), run_name=run_name,
                               tags=tags, parent_run_id=parent_run_id)
    log_numbers(run_id, params=params)
    state["mlflow_run_id"] = run_id
    return run_id


def log_numbers(run_id: str, metrics: dict[str, float] | None = None, step: int = 0,
                params: dict | None = None) -> None:
    """One batch: metrics at `step`, params (numbers stay numbers: MLflow stores their text)."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    client().log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, int(step)) for k, v in (metrics or {}).items() if v is not None],
        params=[Param(k, str(v)) for k, v in (params or {}).items() if v is not None])

