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
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


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
