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
