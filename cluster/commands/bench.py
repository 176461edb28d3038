"""`aigc-edge bench env|policy|generator`: measure, print ratios against an in-process baseline."""
from __future__ import annotations

import argparse
import importlib

from cluster.output import emit

# target -> (module, function): each function takes the parsed args and returns the result dict.
TARGETS = {
    "env": ("envs.bench", "bench_env"),
    "policy": ("policies.bench", "bench_policy"),
    "generator": ("serving.bench", "bench_generator"),
}


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "bench", parents=parents, help="benchmark the simulator, a policy, the generator or the router",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmarks (not timed tests). Examples:\n"
                    "  aigc-edge bench env --json\n"
                    "  aigc-edge bench env --scenario collab-exit/urban --batch 1024")
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--scenario", default="dedgeai", help="scenario for `env` (default dedgeai)")
    p.add_argument("--batch", type=int, default=4096, help="vectorised copies for `env` (default 4096)")
    p.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    p.set_defaults(handler=run)


def run(args) -> int:
    module_name, function_name = TARGETS[args.target]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"aigc-edge bench {args.target}: not available yet ({exc.name} is missing)")
        return 2
    result = getattr(module, function_name)(args)
    emit(result, args.json)
    return 0
