"""The learned router following its registry alias under load: the figures of docs/serving.md
("Following the registry alias").

    RAY_AUTH_MODE=token nice -n 10 .venv/bin/python benchmarks/serve_swap.py \
        [--requests 60] [--rate 3] [--move-after 8] [--follow-alias-s 1] [--policy-v2 PATH] \
        [--out benchmarks/results/serving/swap.json]

A temporary MLflow store (SQLite, its own $AIGC_EDGE_HOME) holds the shipped router artifact as
version 1 of aigc-edge-policy-serve-sim, alias champion. The endpoint (default topology, embedded
Ray) serves `models:/aigc-edge-policy-serve-sim@champion` and follows the alias. An open-loop
Poisson load runs; `--move-after` seconds in, `--policy-v2` is logged in a new run and registered
(version 2, the alias moves to it: policies.tracking.register_policy). Written: requests, failed
(any answer but 200), the registry versions in the order answers came back, and the time from the
alias move to the first version-2 answer.

tests/test_router_alias.py imports `register_artifact` and `swap_under_load` from here.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "serving" / "swap.json"
SCENARIO = "serve-sim"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project_path(path: str | Path) -> str:
    """`path` relative to the project when it is inside it (results name no machine's folders)."""
    full = Path(path).resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(path)


def register_artifact(folder: str | Path, run_name: str, scenario: str = SCENARIO) -> str:
    """Log `folder` as a new run's `policy` artifact in this process's MLflow store and register it
    (policies.tracking.register_policy: a new version, the champion alias moved to it); -> the version."""
    from policies.tracking import (CHAMPION_ALIAS, EXPERIMENT_TRAIN, configure_mlflow, policy_model_name,
                                   register_policy, start_tracked_run)

    client = configure_mlflow().MlflowClient()
    run_id = start_tracked_run(EXPERIMENT_TRAIN, {"policy_source": str(folder)}, run_name=run_name,
                               tags={"scenario": scenario})
    client.log_artifacts(run_id, str(folder), "policy")
    client.set_terminated(run_id, "FINISHED")
    register_policy(run_id, scenario)
    return str(client.get_model_version_by_alias(policy_model_name(scenario), CHAMPION_ALIAS).version)


@dataclass
class Answer:
    scheduled_s: float           # from the start of the load
    done_s: float                # when the answer (or the error) came back
    status: int                  # HTTP status, 0 for a transport error
    model_version: str | None    # the registry version that decided (x-aigc-model-version)
    policy_version: str | None   # the Router's swap counter (x-aigc-policy-version)


async def _send(client, t0: float, at: float, body: dict) -> Answer:
    await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
    try:
        r = await client.post("/v1/generate", json=body)
        status, headers = r.status_code, r.headers
    except Exception:  # a transport error is a dropped request to count, not a crash
        status, headers = 0, {}
    return Answer(at, time.perf_counter() - t0, status, headers.get("x-aigc-model-version"),
                  headers.get("x-aigc-policy-version"))


def in_order(answers: list[Answer]) -> list[list]:
    """Registry versions of the answers by the time they came back, run-length: [[version, count], ...]."""
    runs: list[list] = []
    for a in sorted((a for a in answers if a.status == 200), key=lambda a: a.done_s):
        if runs and runs[-1][0] == a.model_version:
            runs[-1][1] += 1
        else:
            runs.append([a.model_version, 1])
    return runs


async def swap_under_load(url: str, requests: int, rate_per_s: float, move_after_s: float, move,
                          steps: list[int], deadline_s: float, seed: int = 0) -> dict:
    """Open-loop Poisson load (serving/app/loadtest.py's arrivals and bodies); `move()` (blocking,
    -> the new version) runs `move_after_s` into it. -> the figures, and every answer."""
    import httpx

    from serving.app.loadtest import arrival_times, request_bodies

    arrivals = arrival_times(requests, rate_per_s, seed)
    bodies = request_bodies(requests, steps, seed, deadline_s)
    async with httpx.AsyncClient(base_url=url, timeout=deadline_s + 30.0) as client:
        t0 = time.perf_counter() + 0.05
        tasks = [asyncio.create_task(_send(client, t0, float(a), b)) for a, b in zip(arrivals, bodies)]
        await asyncio.sleep(max(0.0, t0 + move_after_s - time.perf_counter()))
        new_version = await asyncio.to_thread(move)
        moved_s = time.perf_counter() - t0       # register_policy's last call moves the alias
        answers = list(await asyncio.gather(*tasks))
    first_new = min((a.done_s for a in answers if a.status == 200 and a.model_version == new_version), default=None)
    return {"requests": len(answers), "completed": sum(a.status == 200 for a in answers),
            "failed": sum(a.status != 200 for a in answers),
            "status_counts": {str(k): v for k, v in sorted(Counter(a.status for a in answers).items())},
            "offered_per_s": len(arrivals) / float(arrivals[-1]), "new_version": new_version,
            "versions_in_order": in_order(answers), "alias_moved_at_s": round(moved_s, 3),
            "first_new_version_answer_s": None if first_new is None else round(first_new, 3),
            "alias_move_to_first_new_answer_s": None if first_new is None else round(first_new - moved_s, 3),
            "answers": [asdict(a) for a in answers]}


def main() -> None:
    from serving.app.routing import DEFAULT_POLICY

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--rate", type=float, default=3.0, help="offered requests/s (open loop)")
    ap.add_argument("--move-after", type=float, default=8.0, help="seconds into the load when version 2 is registered")
    ap.add_argument("--follow-alias-s", type=float, default=1.0, help="the Router's RouterSettings.follow_alias_s")
    ap.add_argument("--policy-v2", default=DEFAULT_POLICY, help="artifact folder registered as version 2 "
                    "(default: the shipped serving/models/router-serve-sim again)")
    ap.add_argument("--deadline-s", type=float, default=20.0,
                    help="request deadline (generous: the swap is measured, not the SLO)")
    ap.add_argument("--topology", default=None,
                    help="the deployment (default serving/topologies/default.yaml), e.g. the changed one a "
                         "transfer adapted the policy to: serving/topologies/node-slowed.yaml")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    import httpx
    import ray
    from ray import serve

    from envs.topology import load_topology
    from policies.tracking import policy_model_name
    from serving.app.config import RouterSettings, ServeAppConfig
    from serving.app.deploy import deploy, replica_details

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    store = Path(tempfile.mkdtemp(prefix="aigc-edge-swap-"))
    # The store exists for this run only; it is set after Ray started, so the Router replica does not
    # inherit it: RouterSettings carries it (tracking_uri), as from any driver that deploys.
    os.environ["AIGC_EDGE_HOME"] = str(store)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    try:
        v1 = register_artifact(DEFAULT_POLICY, "swap-v1")
        policy = f"models:/{policy_model_name(SCENARIO)}@champion"
        topology_file = str(Path(args.topology).resolve()) if args.topology else None
        cfg = ServeAppConfig(port=free_port(), topology=topology_file,
                             routing=RouterSettings(router="learned", policy=policy,
                                                                      follow_alias_s=args.follow_alias_s))
        url = deploy(cfg, timeout_s=300)
        before = {d: sorted(r["replica_id"] for r in reps) for d, reps in replica_details().items()}
        health_before = httpx.get(f"{url}/healthz").json()
        topology = load_topology(topology_file)
        result = asyncio.run(swap_under_load(
            url, args.requests, args.rate, args.move_after,
            lambda: register_artifact(args.policy_v2, "swap-v2"), topology.workload.steps, args.deadline_s, args.seed))
        time.sleep(0.5)
        health_after = httpx.get(f"{url}/healthz").json()
        nodes = httpx.get(f"{url}/v1/nodes").json()
        after = {d: sorted(r["replica_id"] for r in reps) for d, reps in replica_details().items()}
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(store, ignore_errors=True)

    command = "RAY_AUTH_MODE=token .venv/bin/python benchmarks/serve_swap.py " + " ".join(sys.argv[1:])
    out = {"command": command.strip(),
           "policy": policy, "tracking_uri": "sqlite (temporary)", "version_1": v1,
           "policy_v2": project_path(args.policy_v2),
           "follow_alias_s": args.follow_alias_s, "rate_per_s": args.rate, "move_after_s": args.move_after,
           "deadline_s": args.deadline_s, "seed": args.seed,
           "topology": args.topology or "serving/topologies/default.yaml",
           "healthz_before": health_before, "healthz_after": health_after,
           "router_rss_mb_after": nodes.get("router_rss_mb"), "replicas_restarted": before != after}
    answers = result.pop("answers")
    out.update(result)
    out["answers"] = answers
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "answers"}))


if __name__ == "__main__":
    main()
