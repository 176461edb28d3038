"""An ASHA hyper-parameter search over the typed training options (`search:` of an experiment).

Each sample is a scratch trial on `search.target` whose TrainConfig fields (dotted keys, e.g.
`training.actor_lr`, `model.hidden`) come from the space; ASHA (Li et al. 2020) compares trials at
their evaluations (`training_iteration` = evaluation number) and stops the weaker ones. The
report ranks the samples by their last evaluation return.
"""
from __future__ import annotations

import json
from pathlib import Path

from envs.config import ConfigError
from tuning import recording
from tuning.experiment import SCRATCH, ExperimentConfig, SearchDomain
from tuning.trial import TrialSpec, train_config


def domain(d: SearchDomain):
    from ray import tune

    if d.loguniform is not None:
        return tune.loguniform(*d.loguniform)
    if d.uniform is not None:
        return tune.uniform(*d.uniform)
    return tune.choice(d.choice)


def _example(d: SearchDomain):
    return d.loguniform[0] if d.loguniform else d.uniform[0] if d.uniform else d.choice[0]


def check_space(exp: ExperimentConfig, root: Path) -> None:
    """Every dotted key sets a real TrainConfig field to a valid value (fails before Tune starts)."""
    search = exp.search
    sample = {k: _example(d) for k, d in search.space.items()}
    try:
        train_config(exp, TrialSpec(SCRATCH, search.target, None, exp.seeds[0], tuple(sorted(sample.items()))), root)
    except (ConfigError, ValueError) as e:
        raise ConfigError(f"search.space: {e}") from e


def _mark_stopped(parent_run_id: str, trial_id: str | None) -> None:
    """A trial ASHA stopped is a finished sample, not a killed one: FINISHED, tagged stopped_early."""
    c = recording.client()
    experiment_id = c.get_run(parent_run_id).info.experiment_id
    for run in c.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                              f"and tags.trial_id = '{trial_id}'"):
        c.set_tag(run.info.run_id, "stopped_early", "true")
        c.set_terminated(run.info.run_id, "FINISHED")


def run_search(exp: ExperimentConfig, root: Path, parent_run_id: str, resume: bool, run_stage) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    search = exp.search
    check_space(exp, root)
    scheduler = ASHAScheduler(time_attr="training_iteration", metric="eval_return", mode="max",
                              grace_period=search.grace_period,
                              reduction_factor=search.reduction_factor)
    space = {"cell": {"mode": SCRATCH, "target": search.target, "source": None}, "seed": exp.seeds[0],
             "params": {k: domain(d) for k, d in search.space.items()}}
    config = tune.TuneConfig(scheduler=scheduler, num_samples=search.num_samples,
                             max_concurrent_trials=exp.max_concurrent_trials)
    rungs = {search.grace_period * search.reduction_factor ** k for k in range(20)}

    def unfinished(grid) -> int:
        """Samples neither finished nor stopped by ASHA at a rung (Ctrl-C stops them anywhere)."""
        done = sum(bool((r.metrics or {}).get("finished"))
                   or (r.error is None and (r.metrics or {}).get("training_iteration") in rungs) for r in grid)
        return search.num_samples - done

    grid = run_stage("search", exp, root, parent_run_id, space, resume, tune_config=config, count_unfinished=unfinished)
    for r in grid:
        if not (r.metrics or {}).get("finished"):
            _mark_stopped(parent_run_id, r.metrics.get("trial_id"))
    rows = sorted(({"params": r.config["params"], "eval_return": (r.metrics or {}).get("eval_return"),
                    "evaluations": (r.metrics or {}).get("training_iteration"),
                    "stopped_early": not (r.metrics or {}).get("finished")} for r in grid),
                  key=lambda row: -(row["eval_return"] if row["eval_return"] is not None else float("-inf")))
    folder = root / "report"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# ASHA search `{exp.name}` on {search.target} ({exp.algo})", "",
             f"{search.num_samples} samples, grace {search.grace_period} evaluations, reduction factor "
             f"{search.reduction_factor}; metric: the last evaluation return (higher is better).", "",
             "| rank | " + " | ".join(search.space) + " | eval return | evaluations | stopped early |",
             "|---:|" + "---:|" * len(search.space) + "---:|---:|---|"]
    for i, row in enumerate(rows, 1):
        values = " | ".join(f"{row['params'][k]:.4g}" if isinstance(row["params"][k], float) else str(row["params"][k])
                            for k in search.space)
        er = "-" if row["eval_return"] is None else f"{row['eval_return']:.2f}"
        lines.append(f"| {i} | {values} | {er} | {row['evaluations']} | {row['stopped_early']} |")
    (folder / "search.md").write_text("\n".join(lines) + "\n")
    (folder / "search.json").write_text(json.dumps(rows, indent=1, default=float))
    recording.client().log_artifacts(parent_run_id, str(folder), "report")
    return {"best": rows[0] if rows else None, "cells": rows, "report": str(folder)}
