"""`aigc-edge loadtest`: a thin shell over `serving.app.loadtest.run_loadtest` (+ MLflow logging)."""
from __future__ import annotations

import argparse

from cluster.output import emit, progress


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "loadtest", parents=parents, help="open-loop Poisson load test of a running endpoint (loopback)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Open-loop Poisson arrivals (seeded), each request timed from its scheduled send;\n"
                    "bounded in count and time; logged to MLflow (aigc-edge/serving) with a latency CDF.\n"
                    "Examples:\n"
                    "  aigc-edge loadtest --requests 300 --json                 # 0.7 x the topology's capacity\n"
                    "  aigc-edge loadtest --rate 4 --requests 200\n"
                    "  aigc-edge loadtest --set load=0.9 --set capacity_per_s=7.5\n"
                    "  aigc-edge loadtest --set ramp=[0.3,1.2] --requests 600\n"
                    "Fields for --set: serving/app/loadtest.py LoadtestConfig.")
    p.add_argument("--url", default=None, help="endpoint base URL (default http://127.0.0.1:8000)")
    p.add_argument("--rate", type=float, default=None, help="offered requests/s (default: load x capacity)")
    p.add_argument("--requests", type=int, default=None, help="requests to send (default 300)")
    p.add_argument("--topology", default=None, help="topology YAML (capacity, steps and SLO defaults)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the run to MLflow")
    p.set_defaults(handler=run)


def run(args) -> int:
    import tempfile

    from envs.config import load_config
    from serving.app.loadtest import LoadtestConfig, log_to_mlflow, run_loadtest

    base = {k: v for k, v in {"url": args.url, "rate_per_s": args.rate, "requests": args.requests,
                              "topology": args.topology, "seed": args.seed}.items() if v is not None}
    cfg = load_config(LoadtestConfig, None, args.overrides, base=base)
    result = run_loadtest(cfg, log=progress)
    summary = result.summary()
    if not args.no_mlflow:
        with tempfile.TemporaryDirectory() as tmp:
            summary["run_id"] = log_to_mlflow([result], cfg.model_dump(mode="json"), f"loadtest-{result.router}",
                                              tmp, seed=cfg.seed)
    emit(summary, args.json)
    return 0
