"""`aigc-edge transfer` end to end on a user's YAML family (conftest.finished_transfer), and a tiny ASHA search, on real Ray
Tune and a real MLflow store (slow: a few minutes on 2 cores)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DESIGN_KEYS = ("source", "target", "reuse", "algo", "jumpstart", "asymptotic_gain", "auc_norm", "transfer_ratio",
               "steps_to_threshold", "scratch_steps_to_threshold", "final_return", "run_id")


def aigc_edge(*args, home: Path) -> dict:
    env = {**os.environ, "AIGC_EDGE_HOME": str(home), "RAY_AUTH_MODE": "token"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "cluster.cli", *args, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def client(home: Path):
    import mlflow
    return mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def test_transfer_to_a_users_yaml_family(finished_transfer):
    run, out = finished_transfer
    family = run.family
    assert all(k in out for k in DESIGN_KEYS), sorted(out)
    assert out["target"] == str(family) and out["reuse"] == "init"
    assert (out["steps_to_threshold"] is None) == out["censored"]
    c = run.client()
    child = c.get_run(out["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == out["parent_run_id"]
    assert child.data.tags["reuse_mode"] == "init" and child.data.params["target"] == str(family)
    assert "jumpstart" in child.data.metrics
    steps = [m.step for m in c.get_metric_history(out["run_id"], "eval_return")]
    assert steps[0] == 0 and steps == sorted(steps) and len(steps) >= 3
    assert c.get_run(out["parent_run_id"]).info.status == "FINISHED"
    report = Path(out["report"])
    assert (report / "summary.md").read_text().count("| collab-exit/urban | busy-urban | init |") == 2  # returns, latency
    assert (report / "transfer_curves.png").stat().st_size > 5000


def test_a_tiny_asha_search(tmp_path):
    exp = tmp_path / "asha.yaml"
    exp.write_text(
        "name: asha-tiny\nalgo: lad\nseeds: [0]\ntarget_episodes: 2\neval_every_decisions: 256\neval_episodes: 2\n"
        "num_envs: 2\ncpus_per_trial: 0.5\ntraining: {rollout_decisions: 256, learning_starts: 256}\n"
        "search:\n  target: collab-exit/urban\n  num_samples: 2\n  grace_period: 1\n  reduction_factor: 2\n"
        "  space:\n    training.actor_lr: {loguniform: [1.0e-4, 3.0e-3]}\n"
        "    training.decisions_per_update: {choice: [8, 16]}\n")
    out = aigc_edge("tune", str(exp), home=tmp_path / "home")
    rows = out["cells"]
    assert len(rows) == 2 and out["best"] == rows[0]
    assert all(1e-4 <= r["params"]["training.actor_lr"] <= 3e-3 for r in rows)
    assert (Path(out["report"]) / "search.md").is_file()
    runs = client(tmp_path / "home").search_runs(
        [client(tmp_path / "home").get_experiment_by_name("aigc-edge/transfer").experiment_id],
        f"tags.mlflow.parentRunId = '{out['parent_run_id']}'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
