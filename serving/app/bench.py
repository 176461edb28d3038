"""`aigc-edge bench router`: what the learned policy costs, measured apart from Serve's own hop.

Shape copied from Ray Serve's own micro-benchmarks (sequential requests after warm-ups, p50):
- `decision_p50_ms`: observation + policy alone, in this process (the Router's `decide`);
- `direct_p50_ms`: the node called from the driver through its DeploymentHandle;
- `passthrough_p50_ms`: HTTP through the Router with a fixed action (no observation, no policy);
- `routed_p50_ms`: HTTP through the learned Router; the fixed action is the one the learned policy
  takes on the idle system, so both run the same node, plan and steps;
- `overhead_p50_ms` = routed - passthrough.
Then saturation: open-loop arrivals at `saturation_load` x the sum of node capacities (plan full,
least-loaded, a long deadline) and the throughput achieved; and the resident memory of a node
replica and of the Router, from their own reports.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from envs.topology import load_topology
from serving.app.config import RouterSettings, ServeAppConfig
from serving.app.routing import RoutingDecider, scenario_config

BENCH_STEPS = 2          # small: the node's compute is the same on both paths, only its spread matters


def p50(xs) -> float:
    return float(np.percentile(np.asarray(xs), 50))


def decision_times_ms(topology_path: str | None, router: str, policy: str | None, n: int = 2000) -> list[float]:
    decider = RoutingDecider(load_topology(topology_path), scenario_config(topology_path))
    decider.use(router, policy)
    for _ in range(50):
        decider.decide(BENCH_STEPS, 2.5)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        decider.decide(BENCH_STEPS, 2.5)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def http_times_ms(url: str, n: int, warmup: int = 20) -> tuple[list[float], dict]:
    import httpx

    body = {"label": 7, "steps": BENCH_STEPS, "seed": 0}
    times, last = [], {}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            r = client.post("/v1/generate", json=body)
            dt = (time.perf_counter() - t0) * 1000.0
            if r.status_code != 200:
                raise RuntimeError(f"bench request failed: {r.status_code} {r.text[:200]}")
            last = dict(r.headers)
            if i >= warmup:
                times.append(dt)
    return times, last


def direct_times_ms(node: str, plan: str, n: int, warmup: int = 20) -> list[float]:
    from ray import serve

    from serving.app.build import node_deployment_name
    from serving.app.config import APP_NAME

    handle = serve.get_deployment_handle(node_deployment_name(node), APP_NAME)
    times = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        handle.generate.remote(7, plan, BENCH_STEPS, 0).result()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_bench_router(policy: str, topology: str | None = None, requests: int = 100,
                     saturation_requests: int = 300, saturation_load: float = 1.5, port: int | None = None,
                     log=print) -> dict:
    import httpx

    from serving.app.deploy import deploy, swap_policy
    from serving.app.loadtest import LoadtestConfig, run_loadtest

    decision = decision_times_ms(topology, "learned", policy)
    log(f"decision (observation + policy): p50 {p50(decision):.3f} ms")
    cfg = ServeAppConfig(topology=topology, port=port or free_port(),
                         routing=RouterSettings(router="learned", policy=policy))
    url = deploy(cfg, log=log)
    routed, headers = http_times_ms(url, requests)
    node, plan = headers["x-aigc-node"], headers["x-aigc-plan"]
    log(f"learned router: p50 {p50(routed):.2f} ms (it picks {node}/{plan} on the idle system)")
    cfg = swap_policy(cfg, RouterSettings(router=f"fixed:{node}/{plan}"))
    passthrough, _ = http_times_ms(url, requests)
    log(f"pass-through router: p50 {p50(passthrough):.2f} ms")
    cfg = swap_policy(cfg, RouterSettings(router="learned", policy=policy))
    routed2, _ = http_times_ms(url, requests)        # again, after: the two orders bracket drift
    routed = routed + routed2
    direct = direct_times_ms(node, plan, requests)
    log(f"direct node handle: p50 {p50(direct):.2f} ms")
    cfg = swap_policy(cfg, RouterSettings(router="least-loaded"))
    topo = load_topology(topology)
    from envs.serve_sim import RoutingTables
    capacity = RoutingTables(topo).nominal_capacity_per_s
    sat = run_loadtest(LoadtestConfig(url=url, rate_per_s=saturation_load * capacity, requests=saturation_requests,
                                      deadline_s=60.0, topology=topology, seed=1), log=log).summary()
    nodes = httpx.get(f"{url}/v1/nodes", timeout=10).json()
    node_rss = [n["replica_report"]["rss_mb"] for n in nodes["nodes"] if n.get("replica_report")]
    from ray import serve
    serve.shutdown()
    return {"decision_p50_ms": p50(decision), "direct_p50_ms": p50(direct),
            "passthrough_p50_ms": p50(passthrough), "routed_p50_ms": p50(routed),
            "overhead_p50_ms": p50(routed) - p50(passthrough),
            "decision_p99_ms": float(np.percentile(decision, 99)), "bench_action": f"{node}/{plan}",
            "bench_steps": BENCH_STEPS, "requests": requests,
            "node_capacity_sum_per_s": capacity, "saturation_offered_per_s": sat["offered_per_s"],
            "saturation_throughput_per_s": sat["steady_throughput_per_s"],
            "saturation_ratio": sat["steady_throughput_per_s"] / capacity,
            "node_rss_mb_max": max(node_rss) if node_rss else None, "router_rss_mb": nodes.get("router_rss_mb")}


def bench_router(args) -> dict:
    """Entry of `aigc-edge bench router` (cluster/commands/bench.py, which connects Ray first)."""
    from serving.app.routing import DEFAULT_POLICY

    return run_bench_router(getattr(args, "policy", None) or DEFAULT_POLICY, getattr(args, "topology", None),
                            requests=getattr(args, "requests", None) or 100,
                            log=lambda m: print(m, file=sys.stderr, flush=True))
