"""`make demo` as a user runs it, stopped after its requests (`--once`): the routed endpoint serves
one image per class, a short load test is logged to MLflow, and the endpoint, the demo page and
the MLflow UI command are printed."""
from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_serves_images_and_records_a_load_test(isolated_home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "cluster.demo", "--once", "--port", str(port), "--requests", "20"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    from serving.app.api import CLASS_NAMES
    assert all(f"\n{name:<12}" in out for name in CLASS_NAMES[1:]) and out.startswith("class")
    assert f"demo page http://127.0.0.1:{port}/" in out and "aigc-edge ui" in out
    assert (isolated_home / "demo" / "one-per-class.png").stat().st_size > 1000
    completed = int(re.search(r"(\d+)/20 completed", out).group(1))
    assert completed >= 18, out                 # at half the capacity nearly every request is served

    from policies.tracking import EXPERIMENT_SERVING, configure_mlflow
    runs = configure_mlflow().search_runs(experiment_names=[EXPERIMENT_SERVING], output_format="list")
    assert [r.info.run_name for r in runs] == ["demo-loadtest"] and runs[0].info.status == "FINISHED"
    assert "learned/p99_latency_ms" in runs[0].data.metrics
