"""`aigc-edge submit` against a real two-node Ray cluster on this machine (tests/local_cluster.py).

A short training job runs its env runner on the worker node; the worker node is killed after the
first checkpoint; the job fails fast (a lost runner is not restarted: policies/registry.py), the
node comes back, `--retries` resubmits the job with `--resume`, and it ends SUCCEEDED from its
checkpoint, with one MLflow run (FINISHED) and the policy registered. Both nodes are stopped after,
and no process of the cluster is left.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from local_cluster import LocalCluster

TRAIN = ["train", "--scenario", "dedgeai", "--algo", "lad", "--episodes", "24",
         "--set", "scenario_overrides=[n_bs=4,slots=20,max_tasks=8]", "--set", "num_env_runners=1",
         "--set", "num_envs=2", "--set", "checkpoint_every_s=1", "--set", "training.rollout_decisions=400",
         "--set", "training.learning_starts=200", "--set", "model.hidden=16", "--set", "model.critic_hidden=16"]


@pytest.fixture(scope="module")
def cluster():
    # A short temp folder: Ray's unix socket paths under it must stay within 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="aer-", dir="/tmp"))
    try:
        with LocalCluster(temp / "n") as c:
            yield c
        assert not c.leftovers(), "a process of the test cluster is still running"
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_submit_needs_a_command_and_a_cluster(monkeypatch):
    from cluster.jobs import entrypoint, job_address
    from envs.config import ConfigError

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match="submit needs a cluster"):
        job_address(None)
    with pytest.raises(ConfigError, match="submit needs a command"):
        entrypoint([])
    assert entrypoint(["train", "--set", "a=[1, 2]"]) == "python -m cluster.cli train --set 'a=[1, 2]'"


@pytest.mark.slow
def test_a_job_that_loses_its_worker_node_resumes_and_registers_its_policy(cluster, isolated_home, tmp_path):
    """Submitted as a user does it, from its own process (a process that already ran a local Ray
    keeps that cluster's token)."""
    from policies.tracking import configure_mlflow, policy_model_name

    # The store said explicitly: the cluster's environment was copied when the module began and
    # may hold another test's MLFLOW_TRACKING_URI, which the job would then be given.
    env = {**cluster.env, "AIGC_EDGE_HOME": str(isolated_home),
           "MLFLOW_TRACKING_URI": f"sqlite:///{isolated_home / 'mlflow.db'}"}
    log = tmp_path / "submit.log"
    with open(log, "w") as err:
        job = subprocess.Popen([sys.executable, "-m", "cluster.cli", "submit", "--address", cluster.job_address,
                                "--retries", "1", "--json", "--", *TRAIN, "--json"],
                               env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        state = isolated_home / "checkpoints" / "dedgeai-lad-seed0" / "run.json"
        deadline = time.monotonic() + 240
        while not state.is_file() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.5)
        assert state.is_file(), "no checkpoint before the deadline:\n" + log.read_text()[-3000:]
        cluster.kill_worker_node()
        while "(attempt 2 of 2)" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ": FAILED" in log.read_text(), log.read_text()[-3000:]
        cluster.start_worker()              # the node comes back; the resumed job's runner goes there
        stdout, _ = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    outcome = json.loads(stdout.strip().splitlines()[-1])
    assert job.returncode == 0 and outcome["status"] == "SUCCEEDED" and outcome["attempts"] == 2, log.read_text()[-3000:]

    result = json.loads(next(line for line in reversed(log.read_text().splitlines()) if line.startswith('{"scenario"')))
    assert result["episodes"] == 24 and result["resumed_from_episode"] > 0
    mlflow = configure_mlflow()
    run = mlflow.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and "charts/episodes" in run.data.metrics
    runs = mlflow.search_runs(experiment_names=["aigc-edge/train"], output_format="list")
    assert [r.info.run_id for r in runs] == [result["run_id"]]            # one run, resumed
    version = mlflow.MlflowClient().get_model_version_by_alias(policy_model_name("dedgeai"), "champion")
    assert version.run_id == result["run_id"]
