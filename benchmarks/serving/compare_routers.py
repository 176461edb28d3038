"""Routers compared in one run on the default heterogeneous topology: the figures of docs/serving.md.

    .venv/bin/python benchmarks/serving/compare_routers.py [--requests 150] [--seeds 0 1 2] [--load 0.7]

One embedded Ray + Serve deployment; for each seed, each router in turn (hot-swapped through the
config-file path, no restart), an open-loop Poisson load test at `load` x the topology's nominal
capacity (the sum of node capacities, plan full). Also the zero-wait bound: the mean latency a
policy could reach if no request ever queued (each request's fastest node and plan); the tighter
capacity bound is benchmarks/serving/router_bound.py's, which reads this script's results. Writes
benchmarks/results/serving/compare_routers.{json,md,png} and one MLflow run (aigc-edge/serving).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "serving"
ROUTERS = ("learned", "greedy", "least-loaded", "round-robin", "random")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--load", type=float, default=0.7)
    args = ap.parse_args()

    import ray
    from ray import serve

    from envs.serve_bounds import zero_wait_s
    from envs.serve_sim import RoutingTables
    from envs.topology import load_topology
    from serving.app.config import RouterSettings, ServeAppConfig
    from serving.app.deploy import deploy, swap_policy
    from serving.app.loadtest import LoadtestConfig, log_to_mlflow, request_bodies, run_loadtest
    from serving.app.routing import DEFAULT_POLICY

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cfg = ServeAppConfig(port=free_port(), routing=RouterSettings(router="learned", policy=DEFAULT_POLICY))
    url = deploy(cfg, log=print)
    rows, results = [], []
    for k, seed in enumerate(args.seeds):
        # each seed starts with another router: a slow spell of a shared machine (or the first run
        # after the deploy) does not always fall on the same router
        for router in ROUTERS[k % len(ROUTERS):] + ROUTERS[:k % len(ROUTERS)]:
            settings = RouterSettings(router=router, policy=DEFAULT_POLICY if router == "learned" else None, seed=seed)
            cfg = swap_policy(cfg, settings)
            time.sleep(3.0)                   # the previous router's requests drain
            started = time.strftime("%H:%M:%S", time.gmtime())
            res = run_loadtest(LoadtestConfig(url=url, load=args.load, requests=args.requests, seed=seed),
                               router=router, log=print)
            s = res.summary()
            s["seed"], s["started_utc"], s["load_average_1m"] = seed, started, os.getloadavg()[0]
            rows.append(s)
            results.append(res)
            print(json.dumps({k: s[k] for k in ("router", "seed", "mean_latency_ms", "p99_latency_ms",
                                                "slo_miss_rate", "mean_quality", "errors")}), flush=True)
    serve.shutdown()
    ray.shutdown()

    bodies = [b for seed in args.seeds for b in request_bodies(args.requests, [5, 10, 20], seed, None)]
    bound = zero_wait_s(RoutingTables(load_topology()), [b["steps"] for b in bodies])
    table = {}
    for router in ROUTERS:
        mine = [r for r in rows if r["router"] == router]
        table[router] = {k: float(np.mean([r[k] for r in mine])) for k in
                         ("mean_latency_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "slo_miss_rate",
                          "mean_quality", "throughput_per_s", "errors", "retried", "offered_per_s")}
    L = table["learned"]
    heur = [r for r in ROUTERS if r != "learned"]
    best_miss = min(table[r]["slo_miss_rate"] for r in heur)
    targets = {
        "mean_vs_round_robin": L["mean_latency_ms"] / table["round-robin"]["mean_latency_ms"],
        "mean_vs_least_loaded": L["mean_latency_ms"] / table["least-loaded"]["mean_latency_ms"],
        "p99_lower_than_every_heuristic": all(L["p99_latency_ms"] < table[r]["p99_latency_ms"] for r in heur),
        "slo_miss_vs_best_heuristic": (L["slo_miss_rate"], best_miss),
        "quality_vs_heuristics_min_ratio": min(L["mean_quality"] / table[r]["mean_quality"] for r in heur),
        "zero_wait_bound_mean_ms": bound * 1000.0,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "compare_routers.json").write_text(json.dumps({"args": vars(args), "rows": rows, "table": table,
                                                          "targets": targets}, indent=2, default=str))
    lines = [f"# Routers compared: default topology, load {args.load} of nominal capacity, "
             f"{args.requests} requests x seeds {args.seeds}", "",
             "Command: `.venv/bin/python benchmarks/serving/compare_routers.py "
             f"--requests {args.requests} --seeds {' '.join(map(str, args.seeds))} --load {args.load}` "
             "(routers in turn, each seed starting with the next one)", "",
             "| router | mean ms | p50 ms | p95 ms | p99 ms | SLO miss | quality | throughput/s | errors | retried |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for router, v in table.items():
        lines.append(f"| {router} | {v['mean_latency_ms']:.0f} | {v['p50_latency_ms']:.0f} | {v['p95_latency_ms']:.0f} | "
                     f"{v['p99_latency_ms']:.0f} | {v['slo_miss_rate']:.3f} | {v['mean_quality']:.4f} | "
                     f"{v['throughput_per_s']:.2f} | {v['errors']:.1f} | {v['retried']:.1f} |")
    lines += ["", "Per seed (mean ms / p99 ms / SLO miss):", ""]
    for r in rows:
        lines.append(f"- seed {r['seed']} {r['router']}: {r['mean_latency_ms']:.0f} / {r['p99_latency_ms']:.0f} / "
                     f"{r['slo_miss_rate']:.3f} (started {r['started_utc']} UTC, 1-min load average after {r['load_average_1m']:.1f})")
    lines += ["", f"Zero-wait bound (each request's fastest node and plan, no queueing): {bound * 1000:.0f} ms mean.",
              "", "Targets: " + json.dumps(targets, default=str)]
    (OUT / "compare_routers.md").write_text("\n".join(lines) + "\n")
    from serving.app.loadtest import latency_cdf_plot
    latency_cdf_plot([r for r in results if r.outcomes and rows[results.index(r)]["seed"] == args.seeds[0]],
                     OUT / "compare_routers_cdf.png", f"latency CDF, seed {args.seeds[0]}, load {args.load}")
    with tempfile.TemporaryDirectory() as tmp:      # the run's own copy of the plot, not a second file here
        log_to_mlflow([r for r in results if rows[results.index(r)]["seed"] == args.seeds[0]], vars(args),
                      "compare-routers", tmp, seed=args.seeds[0])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
