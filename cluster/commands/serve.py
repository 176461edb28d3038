"""`aigc-edge serve`: a thin shell over `serving.app.deploy.deploy` (embedded local Ray, or --address)."""
from __future__ import annotations

import argparse
import time

from cluster.output import emit, progress


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "serve", parents=parents, help="serve the routed generation endpoint (Ray Serve)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Deploy the edge nodes of a topology and the policy router on Ray Serve, through\n"
                    "Serve's config-file path (as `serve deploy serving/serve_config.yaml`), on 127.0.0.1.\n"
                    "Examples:\n"
                    "  aigc-edge serve                                   # least-loaded router, default topology\n"
                    "  aigc-edge serve --router greedy --set port=8001\n"
                    "  aigc-edge serve --policy models:/aigc-edge-policy-serve-sim@champion\n"
                    "  aigc-edge serve --topology serving/topologies/default.yaml --for-seconds 600\n"
                    "Then: curl -s -X POST localhost:8000/v1/generate -H 'content-type: application/json' \\\n"
                    "        -d '{\"class_name\": \"sneaker\", \"format\": \"json\"}'; open http://127.0.0.1:8000/\n"
                    "Fields for --set: serving/app/config.py ServeAppConfig (port, host, node_num_cpus, ...).")
    p.add_argument("--topology", default=None, help="topology YAML (default serving/topologies/default.yaml)")
    p.add_argument("--router", default=None, choices=["learned", "greedy", "least-loaded", "round-robin", "random"],
                   help="routing policy (default: learned with --policy, else least-loaded)")
    p.add_argument("--policy", default=None, help="learned router: checkpoint folder or models:/NAME@ALIAS")
    p.add_argument("--config", default=None, help="YAML file of ServeAppConfig fields")
    p.add_argument("--for-seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from cluster.connect import connect
    from serving.app.config import load_app_config
    from serving.app.deploy import deploy

    base: dict = {}
    if args.topology:
        base["topology"] = args.topology
    routing = {}
    if args.policy:
        from serving.app.routing import resolve_policy_path
        routing["policy"] = resolve_policy_path(args.policy)   # the user's folder, before Ray's workers see it
    router = args.router or ("learned" if args.policy else None)
    if router:
        routing["router"] = router
    if args.seed is not None:
        routing["seed"] = args.seed
    if routing:
        base["routing"] = routing
    cfg = load_app_config(args.config, args.overrides, base=base)
    connect()
    url = deploy(cfg, log=progress)
    progress(f"serving {url} (router {cfg.routing.router}); demo page {url}/ ; Ctrl-C stops")
    emit({"url": url, "router": cfg.routing.router, "policy": cfg.routing.policy,
          "topology": cfg.topology or "serving/topologies/default.yaml"}, args.json)
    try:
        started = time.monotonic()
        while args.for_seconds is None or time.monotonic() - started < args.for_seconds:
            time.sleep(1.0)
    except KeyboardInterrupt:
        progress("stopping")
    finally:
        from ray import serve
        serve.shutdown()
    return 0
