"""Register an adapted policy (a transfer trial's) as its scenario's champion in the MLflow registry."""
from __future__ import annotations

import json

from policies.tracking import register_policy
from tuning import recording
from tuning.experiment import ExperimentConfig
from tuning.families import resolve_family
from tuning.stages import experiment_root
from tuning.trial import DONE_FILE, TrialSpec, run_dir


def register_adapted_policy(exp: ExperimentConfig, row: dict) -> str:
    """Log the trial's policy artifact on its child run and make it `aigc-edge-policy-<scenario>@champion`;
    -> the model URI (a Router following that alias takes it)."""
    spec = TrialSpec(row["reuse"], row["target"], row["source"], row["seed"])
    done = json.loads((run_dir(experiment_root(exp.name), exp, spec) / DONE_FILE).read_text())
    recording.client().log_artifacts(row["run_id"], done["policy"], "policy")
    from envs.scenarios import scenario_name
    return register_policy(row["run_id"], scenario_name(resolve_family(row["target"]).config()))
