"""Where run state lives and how every job records itself in MLflow: the one place for both.

Run state lives under `$AIGC_EDGE_HOME` (default `.aigc-edge/` in the project folder):
`mlflow.db` + `mlartifacts/` (the embedded MLflow store), `checkpoints/`, `ray_results/`.
`MLFLOW_TRACKING_URI` points at a shared server instead. The MLflow names (experiments,
registered models, the champion alias) are defined here and nowhere else.

`MlflowTrainingRecorder` is how `aigc-edge train` records a run: a training callback
(`policies/training.py`) that logs params, tags, a whitelist of metrics per iteration (one
`log_batch`), the learning curve and the policy artifact, and registers the policy.

MLflow is imported lazily so that nothing pays for it before it records.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from policies.callbacks import TrainingCallbacks

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


def run_tags(seed: int | None, tags: dict[str, str] | None = None) -> dict[str, str]:
    """The tags every run carries: the git commit, the package versions, the seed (+ `tags`)."""
    all_tags = {"git_commit": git_commit(), "seed": str(seed)}
    all_tags.update({f"version.{k}": v for k, v in package_versions().items()})
    all_tags.update(tags or {})
    return all_tags


def log_config(client, run_id: str, config: dict) -> None:
    """`config` flattened into params (`a.b`), in batches of MLflow's cap of 100."""
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in flatten(config).items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])


def start_tracked_run(experiment: str, config: dict, seed: int | None = None, run_name: str | None = None,
                      tags: dict[str, str] | None = None, parent_run_id: str | None = None) -> str:
    """A new RUNNING run with `config` as params and `run_tags` as tags, not made the active run
    (a caller in another process, e.g. a Tune trial, can log to it by id); -> its run id."""
    mlflow = configure_mlflow()
    client = mlflow.MlflowClient()
    all_tags = run_tags(seed, tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(ensure_experiment(experiment), run_name=run_name, tags=all_tags)
    log_config(client, run.info.run_id, config)
    return run.info.run_id


@contextlib.contextmanager
def tracked_run(experiment: str, config: dict, seed: int | None = None, run_name: str | None = None,
                tags: dict[str, str] | None = None) -> Iterator[Any]:
    """An active MLflow run that logs `config` as params and the git commit, versions and seed as
    tags. A failure inside the block marks the run FAILED instead of leaving it RUNNING."""
    mlflow = configure_mlflow()
    with mlflow.start_run(experiment_id=ensure_experiment(experiment), run_name=run_name,
                          tags=run_tags(seed, tags)) as run:
        log_config(mlflow.MlflowClient(), run.info.run_id, config)
        try:
            yield run
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise


def register_policy(run_id: str, scenario: str) -> str:
    """Register the run's `policy` artifact folder as the scenario's champion; -> its model URI."""
    mlflow = configure_mlflow()
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name = policy_model_name(scenario)
    try:
        client.create_registered_model(name, description="aigc-edge policy artifacts (policy_spec.json + RLModule)")
    except MlflowException:
        pass  # already registered
    # The artifact is a folder, not an MLflow-flavoured model: register its artifact location.
    source = f"{client.get_run(run_id).info.artifact_uri}/policy"
    version = client.create_model_version(name, source=source, run_id=run_id)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
    return f"models:/{name}@{CHAMPION_ALIAS}"


class MlflowTrainingRecorder(TrainingCallbacks):
    """A training callback: one MLflow run per training run in `aigc-edge/train`, resumed with it.

    The run id is kept in the run's state (`run.json`), so a resumed training continues its run."""

    def __init__(self, experiment: str = EXPERIMENT_TRAIN, tags: dict[str, str] | None = None):
        self.experiment, self.extra_tags = experiment, dict(tags or {})
        self.run_id: str | None = None
        self.cfg = None

    def on_start(self, cfg, scenario_config, state: dict, resumed_from) -> None:
        from envs.scenarios import scenario_name

        mlflow = configure_mlflow()
        self.cfg, self.scenario = cfg, scenario_name(scenario_config)
        self.client = mlflow.MlflowClient()
        if state.get("run_id"):
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        tags = {"algo": cfg.algo, "scenario": self.scenario, **self.extra_tags}
        config = {"train": cfg.model_dump(mode="json"), "scenario_config": scenario_config.model_dump(mode="json")}
        self.run_id = start_tracked_run(self.experiment, config, seed=cfg.seed, run_name=cfg.name(), tags=tags)
        state["run_id"] = self.run_id

    def on_iteration(self, progress, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, progress.iteration) for k, v in metrics.items()])

    def on_message(self, message: str) -> None:
        pass

    def on_end(self, result: dict, run_dir: Path) -> None:
        from mlflow.entities import Metric

        client, run_id = self.client, self.run_id
        for name in ("learning_curve.png", "episodes.csv"):
            client.log_artifact(run_id, str(run_dir / name), "plots")
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(f"final/{k}", float(v), now, result.get("iterations", 0))
                                          for k, v in result.items() if k.startswith("final_") or k == "wall_s"])
        result["run_id"] = run_id
        if "policy" in result:
            client.log_artifacts(run_id, result["policy"], "policy")
            if self.cfg.register_policy:
                result["model_uri"] = register_policy(run_id, self.scenario)
        client.set_terminated(run_id, "FINISHED")

    def on_failure(self, error: BaseException) -> None:
        if self.run_id is not None:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            self.client.set_terminated(self.run_id, status)
