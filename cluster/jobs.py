"""Run an `aigc-edge` command as a Ray job on a cluster: ship the code, stream the logs, retry.

`submit(command, address)` packs the project folder as the job's working directory (the folders
are the import packages, so `python -m cluster.cli ...` runs as is on any node), sets absolute
locations for run state and MLflow (a job runs in an unpacked session folder, where relative paths
would land), passes the token-auth mode on, streams the driver's log, and returns the job's end.
With `retries`, a job that FAILED is submitted again with `--resume` (commands that can resume
continue from their last checkpoint: `train`, `tune`).
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from envs.config import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Never shipped: the virtualenv, run state, git history, caches and the agents benchmark's run state.
EXCLUDES = [".venv", ".aigc-edge", ".git", "**/__pycache__", ".pytest_cache", "*.egg-info",
            "benchmarks/results/agents/runs"]
RESUMABLE = ("train", "tune")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass
class JobOutcome:
    job_id: str
    status: str
    attempts: int
    wall_s: float


def job_address(address: str | None) -> str:
    """The job server's address: `address`, else RAY_ADDRESS; a clear error when neither is set."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError("submit needs a cluster: --address http://HEAD:8265 (the job server), "
                          "or HEAD:6379 on a cluster node, or RAY_ADDRESS")
    return address


def job_environment(home: str | None, tracking_uri: str | None) -> dict[str, str]:
    """What every job sees: absolute run state and tracking locations, and the auth mode."""
    from policies.tracking import home as local_home

    run_home = Path(home).expanduser().resolve() if home else local_home()
    env = {"AIGC_EDGE_HOME": str(run_home), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "MLFLOW_TRACKING_URI": tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
           or f"sqlite:///{run_home / 'mlflow.db'}"}
    if os.environ.get("RAY_AUTH_MODE"):
        env["RAY_AUTH_MODE"] = os.environ["RAY_AUTH_MODE"]
    return env


def entrypoint(command: list[str]) -> str:
    import shlex

    if not command:
        raise ConfigError("submit needs a command after `--`, e.g. aigc-edge submit -- train --scenario dedgeai")
    if command[0] in ("aigc-edge", "submit"):
        raise ConfigError(f"give the subcommand itself after `--` (e.g. `train ...`), not {command[0]!r}")
    return "python -m cluster.cli " + shlex.join(command)


def submit(command: list[str], address: str | None = None, *, home: str | None = None,
           tracking_uri: str | None = None, retries: int = 0, entrypoint_num_cpus: float = 0,
           log=print) -> JobOutcome:
    """Submit `command` (an `aigc-edge` subcommand and its arguments) and follow it to its end."""
    if not command:
        raise ConfigError("command: give the aigc-edge subcommand to run after --, "
                          "e.g. submit -- train --scenario dedgeai --episodes 10")
    if retries < 0:
        raise ConfigError(f"retries: must be >= 0, got {retries}")
    if retries and command[:1] and command[0] not in RESUMABLE:
        raise ConfigError(f"retries: only {', '.join(RESUMABLE)} can resume, not {command[0]!r}")
    from ray.job_submission import JobSubmissionClient

    address = job_address(address)
    try:
        client = JobSubmissionClient(address)
    except ConnectionError as exc:
        raise ConfigError(f"address: no Ray job server answers at {address} ({exc}); give the head's "
                          "dashboard address (http://HEAD:8265) with --address or RAY_ADDRESS") from None
    runtime_env = {"working_dir": str(PROJECT_ROOT), "excludes": EXCLUDES,
                   "env_vars": job_environment(home, tracking_uri)}
    started, attempts, status, job_id = time.monotonic(), 0, "FAILED", ""
    while attempts <= retries:
        argv = list(command) + (["--resume"] if attempts and "--resume" not in command else [])
        attempts += 1
        job_id = client.submit_job(entrypoint=entrypoint(argv), runtime_env=runtime_env,
                                   entrypoint_num_cpus=entrypoint_num_cpus,
                                   metadata={"aigc-edge": " ".join(argv), "attempt": str(attempts)})
        log(f"[submit] job {job_id} (attempt {attempts} of {retries + 1}): {' '.join(argv)}")
        try:
            status = follow(client, job_id, log)
        except KeyboardInterrupt:
            log(f"[submit] interrupted: stopping job {job_id}")
            client.stop_job(job_id)
            raise
        log(f"[submit] job {job_id}: {status}")
        if status != "FAILED":
            break
    return JobOutcome(job_id, status, attempts, time.monotonic() - started)


def follow(client, job_id: str, log) -> str:
    """Stream the job's log lines to `log` until it ends; -> its final status."""
    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            for line in chunk.splitlines():
                log(line)

    asyncio.run(tail())
    status = str(client.get_job_status(job_id))
    while status.split(".")[-1] not in TERMINAL:          # the log ends a moment before the status
        time.sleep(0.5)
        status = str(client.get_job_status(job_id))
    return status.split(".")[-1]


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
