"""`aigc-edge tune CONFIG.yaml [--resume]`: a transfer experiment or a search on Ray Tune."""
from __future__ import annotations

import argparse

from cluster.output import emit, progress

EXAMPLES = """examples:
  aigc-edge tune tuning/experiments/transfer.yaml             # sources, then the transfer grid
  aigc-edge tune tuning/experiments/transfer.yaml --resume    # after Ctrl-C or a kill
  aigc-edge tune tuning/experiments/transfer.yaml --set seeds=[0] --set target_episodes=8
  aigc-edge tune tuning/experiments/asha.yaml                 # ASHA over the typed training options
  aigc-edge tune tuning/experiments/serve-sim.yaml            # adapt the router to topology changes
Runs are in the MLflow experiment aigc-edge/transfer (one parent, a child per trial): `aigc-edge ui`.
Experiment fields: tuning/experiment.py (ExperimentConfig).
"""


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "tune", parents=parents, help="run a transfer experiment or a hyper-parameter search on Ray Tune",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the experiment a YAML file describes (tuning/experiments/): sources trained once, "
                    "the transfer grid over explicit (source, target, mode) cells x seeds, the report; "
                    "every trial an MLflow child run of the experiment's parent run.",
        epilog=EXAMPLES)
    p.add_argument("config", help="experiment YAML (tuning/experiments/*.yaml or your own)")
    p.add_argument("--resume", action="store_true",
                   help="continue the experiment of this name: finished trials are kept, unfinished ones resume")
    p.add_argument("--out", default=None, help="also copy the report (summary.md/json, plots) to this folder")
    p.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from cluster.connect import run_tune_experiment
    from envs.config import load_config
    from tuning.experiment import ExperimentConfig

    exp = load_config(ExperimentConfig, args.config, args.overrides)
    exp.check_families()
    progress(f"experiment {exp.name}: {len(exp.pairs)} pair(s), modes {exp.modes}, seeds {exp.seeds}")
    command = " ".join(["aigc-edge tune", args.config, *(f"--set {o}" for o in args.overrides),
                        *(["--out", args.out] if args.out else [])])
    summary = run_tune_experiment(exp, resume=args.resume, report_dir=Path(args.out) if args.out else None,
                                  command=command)
    if summary is None:
        return 130
    progress(f"report: {summary.get('report')}")
    emit({"name": exp.name, "parent_run_id": summary["parent_run_id"], "report": summary.get("report"),
          "cells": summary.get("cells"), "best": summary.get("best")}, args.json)
    return 0
