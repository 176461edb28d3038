"""`aigc-edge ui` and `aigc-edge mlflow-server`: MLflow on the project's store.

`ui` browses the embedded store ($AIGC_EDGE_HOME/mlflow.db, or $MLFLOW_TRACKING_URI). `mlflow-server`
serves the same store as a tracking server other machines log to (`--tracking-uri http://HOST:PORT`,
or MLFLOW_TRACKING_URI): it proxies artifacts (`--artifacts-destination`), so clients need no
access to its disk. Both bind 127.0.0.1 unless told otherwise, with one worker (what 2 cores take).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from policies.tracking import artifact_root, home, tracking_uri


def register(subparsers, parents) -> None:
    ui = subparsers.add_parser(
        "ui", parents=parents, help="open the MLflow UI on the default store",
        description="Serve the MLflow UI for $MLFLOW_TRACKING_URI, else $AIGC_EDGE_HOME/mlflow.db.",
        epilog="examples:\n  aigc-edge ui\n  aigc-edge ui --port 5001",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    server = subparsers.add_parser(
        "mlflow-server", parents=parents, help="serve the store as a shared MLflow tracking server",
        description="A tracking server on $AIGC_EDGE_HOME's store (SQLite + proxied artifacts) that other "
                    "machines and Ray jobs log to.",
        epilog="examples:\n  aigc-edge mlflow-server --host 0.0.0.0 --port 5000 --allowed-hosts 'head:*,10.0.0.*'\n"
               "  aigc-edge train --tracking-uri http://head:5000 --scenario dedgeai\n"
               "  aigc-edge submit --tracking-uri http://head:5000 -- train --scenario dedgeai",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for p, handler in ((ui, run_ui), (server, run_server)):
        p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=5000, help="port (default 5000)")
        p.set_defaults(handler=handler)
    server.add_argument("--allowed-hosts", default=None,
                        help="Host headers MLflow accepts besides localhost and private IPs (e.g. 'mlflow:*')")


def ui_command(host: str, port: int) -> list[str]:
    uri = tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    if uri.startswith("sqlite:"):
        command += ["--default-artifact-root", artifact_root().as_uri()]
    return command


def server_command(host: str, port: int, allowed_hosts: str | None = None) -> list[str]:
    """The embedded store served with proxied artifacts (the flags verified in RAY-NOTES)."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{home() / 'mlflow.db'}",
               "--artifacts-destination", str(artifact_root()), "--host", host, "--port", str(port), "--workers", "1"]
    return command + (["--allowed-hosts", allowed_hosts] if allowed_hosts else [])


def _serve(command: list[str], what: str, url: str) -> int:
    """Run MLflow in a process group of its own and take it down whole on Ctrl-C or SIGTERM:
    MLflow 3's server leaves its uvicorn children running when only its leader is stopped."""
    print(f"{what} at {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    env = os.environ.copy()
    # MLflow 3's job runner (seven huey consumers, for GenAI jobs this project does not run) would
    # double the server's start time and its memory on 2 cores; set the variable to enable it.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    child = subprocess.Popen(command, env=env, start_new_session=True)
    stopped = []

    def forward(signum, frame):
        # only signal here: the main thread's wait() holds the child's wait lock, so a wait in
        # this handler could not reap it and would sit out its whole timeout
        stopped.append(signum)
        _signal_group(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    try:
        code = child.wait()
        return 0 if stopped else code
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_group(child)


def _signal_group(pgid: int, sig: int) -> bool:
    """-> whether the group still had a member."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def _stop_group(child: subprocess.Popen) -> None:
    """SIGTERM the child's whole group, SIGKILL what is left after 10 s."""
    for sig, grace_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if not _signal_group(child.pid, sig):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            child.poll()                     # reap the leader, or it counts as a member
            if not _signal_group(child.pid, 0):
                return
            time.sleep(0.1)


def run_ui(args) -> int:
    return _serve(ui_command(args.host, args.port), f"MLflow UI for {tracking_uri()}", f"http://{args.host}:{args.port}")


def run_server(args) -> int:
    return _serve(server_command(args.host, args.port, args.allowed_hosts),
                  f"MLflow tracking server for {home() / 'mlflow.db'}", f"http://{args.host}:{args.port}")
