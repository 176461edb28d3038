"""`aigc-edge ui`: the MLflow UI on the project's store (runs, models, transfer experiments)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from policies.tracking import artifact_root, tracking_uri


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "ui", parents=parents, help="open the MLflow UI on the default store",
        description="Serve the MLflow UI for $MLFLOW_TRACKING_URI, else $AIGC_EDGE_HOME/mlflow.db.",
        epilog="examples:\n  aigc-edge ui\n  aigc-edge ui --port 5001",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    p.set_defaults(handler=run)


def run(args) -> int:
    uri = tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", args.host, "--port", str(args.port), "--workers", "1"]
    if uri.startswith("sqlite:"):
        command += ["--default-artifact-root", artifact_root().as_uri()]
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port} (Ctrl-C to stop)", file=sys.stderr)
    try:
        return subprocess.call(command, env=os.environ.copy())
    except KeyboardInterrupt:
        return 0
