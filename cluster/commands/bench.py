"""`aigc-edge bench env|policy|generator|router`: measure, print ratios against an in-process baseline."""
from __future__ import annotations

import argparse
import importlib

from cluster.output import emit

# target -> (module, function): each function takes the parsed args and returns the result dict.
TARGETS = {
    "env": ("envs.bench", "bench_env"),
    "policy": ("policies.bench", "bench_policy"),
    "generator": ("serving.bench", "bench_generator"),
    "router": ("serving.app.bench", "bench_router"),
}


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "bench", parents=parents, help="benchmark the simulator, a policy, the generator or the router",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmarks (not timed tests). Examples:\n"
                    "  aigc-edge bench env --json\n"
                    "  aigc-edge bench env --scenario collab-exit/urban --batch 1024\n"
                    "  aigc-edge bench router --json      # decision, direct, pass-through, routed p50; saturation; memory\n"
                    "  aigc-edge bench router --policy models:/aigc-edge-policy-serve-sim@champion")
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--scenario", default="dedgeai", help="scenario for `env` (default dedgeai)")
    p.add_argument("--batch", type=int, default=4096, help="vectorised copies for `env` (default 4096)")
    p.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    p.add_argument("--policy", default=None, help="`router`: the learned policy (default: the shipped one)")
    p.add_argument("--topology", default=None, help="`router`: topology YAML (default: the shipped one)")
    p.add_argument("--requests", type=int, default=None, help="`router`: sequential requests per path (default 100)")
    p.set_defaults(handler=run)


def run(args) -> int:
    module_name, function_name = TARGETS[args.target]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"aigc-edge bench {args.target}: not available yet ({exc.name} is missing)")
        return 2
    if args.target == "router":     # the endpoint runs on Ray Serve: local Ray, or RAY_ADDRESS's cluster
        from cluster.connect import connect
        connect()
    result = getattr(module, function_name)(args)
    emit(result, args.json)
    return 0
