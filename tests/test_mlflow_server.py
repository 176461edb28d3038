"""`aigc-edge mlflow-server`: a real tracking server on the embedded store that a client on another
machine would log to by URL; artifacts are proxied onto the server's disk."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest


@pytest.mark.slow
def test_a_client_logs_through_the_server_into_the_store(isolated_home, tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cluster.cli", "mlflow-server", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("the MLflow server did not become healthy in 120 s")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        from policies.tracking import EXPERIMENT_TRAIN, tracked_run

        note = tmp_path / "note.txt"
        note.write_text("from a client")
        with tracked_run(EXPERIMENT_TRAIN, {"a": {"b": 1}}, seed=3, run_name="through-the-server") as run:
            import mlflow
            mlflow.log_metric("m", 1.5)
            mlflow.log_artifact(str(note))
        stored = mlflow.get_run(run.info.run_id)
        assert stored.data.params["a.b"] == "1" and stored.data.metrics["m"] == 1.5
        assert stored.info.artifact_uri.startswith("mlflow-artifacts:")        # proxied, not a client path
        assert [p.read_text() for p in (isolated_home / "mlartifacts").rglob("note.txt")] == ["from a client"]
        assert (isolated_home / "mlflow.db").is_file()
    finally:
        server.terminate()                   # what Ctrl-C or a supervisor does: MLflow stops its workers
        server.wait(timeout=30)
        time.sleep(2)
        left = subprocess.run(["pgrep", "-g", str(server.pid)], capture_output=True, text=True).stdout.split()
        if left:
            os.killpg(server.pid, signal.SIGKILL)
        assert not left, f"MLflow processes left after SIGTERM: {left}"
