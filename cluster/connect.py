"""Where jobs run: an embedded local Ray by default, the cluster of `--address`/RAY_ADDRESS otherwise.

The one place that starts or joins Ray. Library code (training, Tune trials, the Serve app) never
calls `ray.init` itself: the command that runs it connects first.
"""
from __future__ import annotations

import os


def connect(num_cpus: int | None = None):
    """A local Ray (or the cluster of RAY_ADDRESS); quiet, no usage stats, no dashboard.

    Inside `ray job submit` RAY_ADDRESS is set and `ray.init(num_cpus=...)` would raise, so the
    CPU count only applies to a local Ray. Returns the `ray` module."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray

    if ray.is_initialized():
        return ray
    if os.environ.get("RAY_ADDRESS"):
        check_reachable(os.environ["RAY_ADDRESS"])
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """A clear error for an address nothing answers at: `ray.init` itself retries a dead GCS for minutes."""
    import socket

    from envs.config import ConfigError

    if address == "auto":
        return
    target = address.removeprefix("ray://")
    if "://" in target:
        raise ConfigError(f"address: {address!r} is a URL (a job server's?); joining a cluster takes HEAD:6379 "
                          "(or ray://HEAD:10001), and `aigc-edge submit` takes http://HEAD:8265")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"address: {address!r} is not HOST:PORT (e.g. HEAD:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"address: nothing answers at {address} ({exc.strerror or exc}); is the head started "
                          "(`ray start --head`) and the port right?") from None


def run_tune_experiment(exp, **options) -> dict | None:
    """`tuning.stages.run_experiment(exp, **options)` in a Ray session of its own, shut down after.

    -> the experiment's summary, or None when it was interrupted (Ctrl-C, a failed trial): the
    command then exits 130 and `--resume` continues it."""
    from cluster.output import progress
    from tuning.stages import ExperimentInterrupted, run_experiment

    ray = connect()
    try:
        return run_experiment(exp, **options)
    except ExperimentInterrupted as e:
        progress(str(e))
        return None
    finally:
        ray.shutdown()
