"""How far the routers are from the best any policy could do: the bound of issue 17's last clause.

    .venv/bin/python benchmarks/serving/router_bound.py [--episodes 32] [--load 0.7]

On the default topology, in simulation (the serve-sim scenario at a fixed load): the five routers'
mean latency and quality, next to two lower bounds from envs/serve_bounds.py: zero-wait (every
request at its fastest node and plan) and the capacity bound (the fastest split of the requests
over nodes and plans that keeps every replica below full time at the router's own mean quality;
queueing left out). The live routers of benchmarks/serving/compare_routers.py, when their results
are there, are set against the capacity bound at their measured offered rate and request steps.
Writes benchmarks/results/serving/router_bound.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from envs.scenarios import load_scenario  # noqa: E402
from envs.serve_bounds import CapacityBound, best_mean_quality, capacity_bound, zero_wait_s  # noqa: E402
from envs.serve_sim import RoutingTables  # noqa: E402
from envs.topology import load_topology  # noqa: E402
from policies.evaluation import evaluate  # noqa: E402
from serving.app.loadtest import request_bodies  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "serving"
LIVE = OUT / "compare_routers.json"
POLICIES = {"learned": str(ROOT / "serving" / "models" / "router-serve-sim"), "greedy": "greedy",
            "least-loaded": "least-loaded", "round-robin": "round-robin", "random": "random"}


def simulated_routers(load: float, episodes: int, seed: int) -> dict[str, dict]:
    config = load_scenario("serve-sim", [f"load=[{load},{load}]"])
    out = {}
    for router, spec in POLICIES.items():
        res = evaluate(config, spec, episodes=episodes, seed=seed)
        out[router] = {"mean_latency_ms": res["mean_delay_s"] * 1000.0, "p95_latency_ms": res["p95_delay_s"] * 1000.0,
                       "mean_quality": res["mean_quality"], "slo_miss_rate": res["deadline_miss_rate"]}
        print(f"sim {router}: {out[router]['mean_latency_ms']:.0f} ms, quality {res['mean_quality']:.4f}", flush=True)
    return out


def bound_at(tables: RoutingTables, rate: float, steps, quality: float) -> CapacityBound:
    """The capacity bound at a router's quality (a finite run may edge past the long-run best)."""
    return capacity_bound(tables, rate, steps, min(quality, best_mean_quality(tables, steps)))


def bound_ms(tables: RoutingTables, rate: float, steps, quality: float) -> float:
    return bound_at(tables, rate, steps, quality).mean_latency_s * 1000.0


def bound_curve(tables: RoutingTables, rate: float, steps, low: float) -> tuple[np.ndarray, np.ndarray]:
    qualities = np.linspace(low, best_mean_quality(tables, steps), 40)
    return qualities, np.array([bound_ms(tables, rate, steps, q) for q in qualities])


def live_routers(tables: RoutingTables) -> tuple[dict[str, dict], float, list[int]] | None:
    """The live table of compare_routers.json and the steps its requests asked for (same seeds)."""
    if not LIVE.exists():
        return None
    data = json.loads(LIVE.read_text())
    args = data["args"]
    steps = [b["steps"] for seed in args["seeds"] for b in request_bodies(args["requests"], [5, 10, 20], seed, None)]
    table = data["table"]
    rate = float(np.mean([v["offered_per_s"] for v in table.values()]))
    out = {r: {"mean_latency_ms": v["mean_latency_ms"], "mean_quality": v["mean_quality"],
               "bound_ms": bound_ms(tables, rate, steps, v["mean_quality"])} for r, v in table.items()}
    return out, rate, steps


def plot(sim, curve, live, live_curve, zero_wait_ms, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    ax.plot(curve[0], curve[1], c="C0", label="capacity bound, simulated rate")
    ax.axhline(zero_wait_ms, c="k", ls=":", lw=0.8, label=f"zero-wait bound {zero_wait_ms:.0f} ms")
    for i, (router, v) in enumerate(sim.items()):
        ax.scatter(v["mean_quality"], v["mean_latency_ms"], c=f"C{i + 2}", marker="o", s=70 if router == "learned" else 30, label=f"{router} (sim)")
    if live:
        ax.plot(live_curve[0], live_curve[1], c="C1", ls="--", label="capacity bound, live rate and steps")
        for i, (router, v) in enumerate(live.items()):
            ax.scatter(v["mean_quality"], v["mean_latency_ms"], c=f"C{i + 2}", marker="^", s=50,
                       edgecolors="k", label=f"{router} (live)")
    ax.set_xlabel("mean quality (profile accuracy ratio)")
    ax.set_ylabel("mean latency (ms)")
    ax.set_yscale("log")
    ax.set_title("routers against the best any policy could do (default topology, load 0.7)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--load", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tables = RoutingTables(load_topology())
    steps = tables.topology.workload.steps
    rate = args.load * tables.nominal_capacity_per_s
    zero_wait_ms = zero_wait_s(tables, steps) * 1000.0
    sim = simulated_routers(args.load, args.episodes, args.seed)
    for v in sim.values():
        v["bound_ms"] = bound_ms(tables, rate, steps, v["mean_quality"])
    at_learned = bound_at(tables, rate, steps, sim["learned"]["mean_quality"])
    low = min(v["mean_quality"] for v in sim.values()) - 0.005
    curve = bound_curve(tables, rate, steps, low)
    found = live_routers(tables)
    live, live_rate, live_steps = found if found else (None, None, None)
    live_curve = bound_curve(tables, live_rate, live_steps, low) if live else None

    OUT.mkdir(parents=True, exist_ok=True)
    plot(sim, curve, live, live_curve, zero_wait_ms, OUT / "router_bound.png")
    result = {"args": vars(args), "rate_per_s": rate, "zero_wait_ms": zero_wait_ms,
              "best_mean_quality": best_mean_quality(tables, steps), "sim": sim,
              "bound_at_learned_quality": {"mean_latency_ms": at_learned.mean_latency_s * 1000.0,
                                           "node_share": at_learned.node_share, "node_busy": at_learned.node_busy},
              "live": live, "live_rate_per_s": live_rate}
    (OUT / "router_bound.json").write_text(json.dumps(result, indent=2))

    lines = [f"# Routers against the bound: default topology, load {args.load} ({rate:.2f} requests/s)", "",
             f"Command: `.venv/bin/python benchmarks/serving/router_bound.py --episodes {args.episodes} "
             f"--load {args.load} --seed {args.seed}`", "",
             f"Zero-wait bound (fastest node and plan, any quality, no queueing): {zero_wait_ms:.0f} ms. "
             f"Capacity bound: the fastest split over (node, plan) at the router's own mean quality that "
             f"keeps every replica below full time (a fluid bound: queueing left out). "
             f"Best mean quality any plan serves: {best_mean_quality(tables, steps):.4f}.", "",
             f"## Simulation ({args.episodes} episodes, seed {args.seed})", "",
             "| router | mean ms | p95 ms | quality | SLO miss | capacity bound ms | mean / bound |", "|---|---|---|---|---|---|---|"]
    for router, v in sim.items():
        lines.append(f"| {router} | {v['mean_latency_ms']:.0f} | {v['p95_latency_ms']:.0f} | {v['mean_quality']:.4f} | "
                     f"{v['slo_miss_rate']:.3f} | {v['bound_ms']:.0f} | {v['mean_latency_ms'] / v['bound_ms']:.2f}x |")
    share = ", ".join(f"{n} {at_learned.node_share[n]:.2f} of requests ({at_learned.node_busy[n]:.0%} busy)"
                      for n in at_learned.node_share)
    lines += ["", f"At the learned router's quality the bound sends: {share}."]
    if live:
        lines += ["", f"## Live (compare_routers.json: offered {live_rate:.2f} requests/s, its requests' steps)", "",
                  "| router | mean ms | quality | capacity bound ms | mean / bound |", "|---|---|---|---|---|"]
        for router, v in live.items():
            lines.append(f"| {router} | {v['mean_latency_ms']:.0f} | {v['mean_quality']:.4f} | {v['bound_ms']:.0f} | "
                         f"{v['mean_latency_ms'] / v['bound_ms']:.2f}x |")
    (OUT / "router_bound.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
