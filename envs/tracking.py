"""Where run state lives and how every job records itself in MLflow: the one place for both.

Run state lives under `$AIGC_EDGE_HOME` (default `.aigc-edge/` in the project folder):
`mlflow.db` + `mlartifacts/` (the embedded MLflow store), `checkpoints/`, `ray_results/`.
`MLFLOW_TRACKING_URI` points at a shared server instead.

MLflow is imported lazily so the NumPy simulator never pays for it.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

PROJECT_ROOT = Path(__file__).resolve().parent.parent

EXPERIMENT_GENERATOR = "aigc-edge/generator"
EXPERIMENT_TRAIN = "aigc-edge/train"
EXPERIMENT_TRANSFER = "aigc-edge/transfer"
EXPERIMENT_SERVING = "aigc-edge/serving"
GENERATOR_MODEL_NAME = "aigc-edge-generator"
CHAMPION_ALIAS = "champion"

TRACKED_PACKAGES = ("numpy", "torch", "ray", "gymnasium", "diffusers", "mlflow", "pydantic")


def policy_model_name(scenario: str) -> str:
    """Registered-model name of a scenario's policy: `aigc-edge-policy-<scenario>` (slashes -> dashes)."""
    return "aigc-edge-policy-" + scenario.replace("/", "-")


def home() -> Path:
    path = Path(os.environ.get("AIGC_EDGE_HOME", PROJECT_ROOT / ".aigc-edge")).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir() -> Path:
    return home() / "checkpoints"


def ray_results_dir() -> Path:
    return home() / "ray_results"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else an absolute SQLite URI (relative ones break under Tune)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def artifact_root() -> Path:
    return home() / "mlartifacts"


def configure_mlflow():
    """Point MLflow at the project's store and return the module."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def ensure_experiment(name: str) -> str:
    """The experiment's id, creating it with artifacts under $AIGC_EDGE_HOME for the embedded store."""
    mlflow = configure_mlflow()
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri().startswith("sqlite:"):
        location = (artifact_root() / name.replace("/", "-")).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: how nested configs become MLflow params."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


@contextlib.contextmanager
def tracked_run(experiment: str, config: dict, seed: int | None = None, run_name: str | None = None,
                tags: dict[str, str] | None = None) -> Iterator[Any]:
    """An MLflow run that logs `config` as params and the git commit, versions and seed as tags.

    A failure inside the block marks the run FAILED instead of leaving it RUNNING.
    """
    mlflow = configure_mlflow()
    experiment_id = ensure_experiment(experiment)
    all_tags = {"git_commit": git_commit(), "seed": str(seed)}
    all_tags.update({f"version.{k}": v for k, v in package_versions().items()})
    all_tags.update(tags or {})
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=all_tags) as run:
        params = {k: str(v)[:6000] for k, v in flatten(config).items()}
        items = list(params.items())
        for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            mlflow.log_params(dict(items[start:start + 100]))
        try:
            yield run
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
