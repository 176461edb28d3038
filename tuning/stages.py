"""Run an experiment on Ray Tune: the sources stage, then the transfer grid (or the search), then the report.

Layout of an experiment's run state, all absolute (`$AIGC_EDGE_HOME/experiments/<name>/`):

    experiment.json        the MLflow parent run's id
    config.json            the experiment as validated
    sources/<algo>/<family>/seed<k>/   each source's training run (DONE.json when finished)
    trials/<trial>/        each target trial's run (DONE.json when finished)
    tune/{sources,transfer,search}/   Tune's own state (Tuner.restore reads it on --resume)
    report/                summary table, JSON and plots (also on the parent run)

Sources are trained once per (family, seed) and skipped when done: Tune has no dependencies
between trials, so they are their own stage. The transfer grid runs FIFO (ASHA would truncate the
curves the metrics need); the search runs ASHA. `--resume` restores each stage's Tuner: finished
trials are not rerun, unfinished ones continue from their checkpoints.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from policies.tracking import home, tracking_uri
from tuning import recording
from tuning.experiment import SOURCE_STAGE, ExperimentConfig
from tuning.trial import DONE_FILE, TrialSpec, run_dir, run_trial


class ExperimentInterrupted(RuntimeError):
    """A stage stopped before all its trials finished (Ctrl-C, a failed trial)."""


def experiment_root(name: str) -> Path:
    return home() / "experiments" / name


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Progress:
    """A Tune callback printing one line per evaluation and per finished trial on stderr."""

    def __new__(cls):
        from ray.tune import Callback

        class Progress(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                if result.get("finished"):
                    return
                _say(f"  [{trial.trial_id}] {_label(trial.config)}: eval return {result.get('eval_return', float('nan')):.2f} "
                     f"at {result.get('step', 0)} target steps ({result.get('episodes', 0)} episodes)")

            def on_trial_complete(self, iteration, trials, trial, **info):
                _say(f"  [{trial.trial_id}] {_label(trial.config)} finished")

            def on_trial_error(self, iteration, trials, trial, **info):
                _say(f"  [{trial.trial_id}] {_label(trial.config)} FAILED: see {trial.local_path}")

        return Progress()


def _label(config: dict) -> str:
    config = config.get("trial", config)
    cell = config.get("cell", {})
    base = f"{cell.get('mode')} {cell.get('source') or ''}->{cell.get('target')} seed {config.get('seed')}"
    params = config.get("params") or {}
    return base + "".join(f" {k}={v}" for k, v in params.items())


def _trainable(exp: ExperimentConfig, root: Path, parent_run_id: str):
    from ray import tune

    fn = tune.with_parameters(run_trial, experiment=exp.model_dump(mode="json"), root=str(root),
                              parent_run_id=parent_run_id, tracking_uri=tracking_uri(), home=str(home()))
    return tune.with_resources(fn, {"cpu": exp.cpus_per_trial})


def _run_stage(stage: str, exp: ExperimentConfig, root: Path, parent_run_id: str, param_space: dict,
               resume: bool, tune_config=None, count_unfinished=None):
    """One Tuner: restored from its state with `resume` (finished trials skipped), else new.

    Whether every trial finished is decided from what was asked for, not from Tune's statuses: on
    Ctrl-C Tune marks the running trials TERMINATED and leaves trials it had not created yet out
    of the results. `count_unfinished(grid)` -> how many are not done (default: the configs of
    the explicit grid without a DONE.json)."""
    from ray import tune

    path = root / "tune" / stage
    trainable = _trainable(exp, root, parent_run_id)
    if resume and tune.Tuner.can_restore(str(path)):
        _say(f"[{stage}] resuming the Tune experiment at {path}")
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
    else:
        if path.exists():
            shutil.rmtree(path)
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune_config or tune.TuneConfig(max_concurrent_trials=exp.max_concurrent_trials),
            run_config=tune.RunConfig(name=stage, storage_path=str(root / "tune"), verbose=0,
                                      callbacks=[_Progress()]))
    grid = tuner.fit()
    failed = [r for r in grid if r.error is not None]
    if count_unfinished is None:
        configs = [c for c in param_space["trial"]["grid_search"]]
        unfinished = sum(not (run_dir(root, exp, TrialSpec.of(c)) / DONE_FILE).is_file() for c in configs)
    else:
        unfinished = count_unfinished(grid)
    if failed or unfinished:
        raise ExperimentInterrupted(
            f"[{stage}] {len(failed)} trial(s) failed, {unfinished} unfinished; "
            f"rerun with --resume to continue (finished trials are kept)"
            + "".join(f"\n  {r.path}: {str(r.error).splitlines()[0] if r.error else ''}" for r in failed))
    return grid


def run_sources(exp: ExperimentConfig, root: Path, parent_run_id: str, resume: bool) -> None:
    todo = [{"cell": {"mode": SOURCE_STAGE, "target": family, "source": None}, "seed": seed}
            for family in exp.sources() for seed in exp.seeds]
    left = [c for c in todo if not (run_dir(root, exp, TrialSpec.of(c)) / DONE_FILE).is_file()]
    _say(f"[sources] {len(todo) - len(left)} of {len(todo)} sources already trained")
    if left:
        _run_stage("sources", exp, root, parent_run_id, explicit(left), resume)


def explicit(configs: list[dict]) -> dict:
    """A param space over exactly these (cell, seed) configs: no cross product."""
    from ray import tune

    return {"trial": tune.grid_search(configs)}


def run_transfer_grid(exp: ExperimentConfig, root: Path, parent_run_id: str, resume: bool) -> None:
    configs = [{"cell": cell, "seed": seed} for cell in exp.cells() for seed in exp.seeds]
    _say(f"[transfer] {len(configs)} trials: {len(exp.cells())} cells x {len(exp.seeds)} seeds, "
         f"{exp.max_concurrent_trials} at a time")
    _run_stage("transfer", exp, root, parent_run_id, explicit(configs), resume)


def run_experiment(exp: ExperimentConfig, resume: bool = False, report_dir: Path | None = None,
                   command: str | None = None) -> dict:
    """Sources, the grid (or the search), the report; the parent run is ended in `finally`."""
    from tuning.report import write_report

    exp.check_families()
    root = experiment_root(exp.name)
    if not resume and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(exp.model_dump(mode="json"), indent=2))
    parent = recording.open_parent(root, exp.name, {"experiment": exp.model_dump(mode="json")}, resume)
    closed = recording.close_running_children(parent)
    if closed:
        _say(f"closed {closed} MLflow run(s) a killed trial left RUNNING")
    status = "FAILED"
    try:
        if exp.search is not None:
            from tuning.search import run_search
            summary = run_search(exp, root, parent, resume, _run_stage)
        else:
            run_sources(exp, root, parent, resume)
            run_transfer_grid(exp, root, parent, resume)
            summary = write_report(exp, root, parent, command)
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            for item in Path(summary["report"]).iterdir():
                shutil.copy2(item, report_dir / item.name)
        status = "FINISHED"
        summary.update(parent_run_id=parent, root=str(root))
        return summary
    except (KeyboardInterrupt, ExperimentInterrupted):
        status = "KILLED"
        raise
    finally:
        recording.close_running_children(parent)
        recording.end_parent(parent, status)

