"""The `aigc-edge` command line: one entry point, one thin module per subcommand.

Each module in `cluster.commands` exposes `register(subparsers, parents)`: it adds its parser
and sets `handler` (a function of the parsed args returning an exit code). Handlers call library
functions that tests call directly.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from envs.config import ConfigError

# Subcommand modules, in the order `--help` lists them (DESIGN.md's order).
COMMAND_MODULES = ("generator", "train", "evaluate", "transfer", "tune", "bench", "serve", "loadtest",
                   "submit", "ui")


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("global options")
    group.add_argument("--address", default=None,
                       help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    group.add_argument("--tracking-uri", default=None,
                       help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else $AIGC_EDGE_HOME/mlflow.db)")
    group.add_argument("--seed", type=int, default=None, help="random seed")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field (dotted keys), repeatable")
    group.add_argument("--json", action="store_true",
                       help="print exactly one JSON object as the last line of stdout")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aigc-edge",
        description="Learned routing and early exit for AI-generated content at the edge (Ray + MLflow).",
        epilog="Run `aigc-edge <command> --help` for a command's options and examples.")
    subparsers = parser.add_subparsers(dest="command", metavar="command")
    parents = [common_options()]
    for name in COMMAND_MODULES:
        importlib.import_module(f"cluster.commands.{name}").register(subparsers, parents)
    return parser


def apply_globals(args: argparse.Namespace) -> None:
    """Global options become the environment the libraries read, so child processes inherit them."""
    if getattr(args, "tracking_uri", None):
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    if getattr(args, "address", None):
        os.environ["RAY_ADDRESS"] = args.address


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    apply_globals(args)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"aigc-edge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aigc-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
