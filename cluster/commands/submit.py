"""`aigc-edge submit -- <command>`: run any aigc-edge command as a Ray job on a cluster."""
from __future__ import annotations

import argparse

from cluster.output import emit

EXAMPLES = """examples:
  aigc-edge submit --address http://HEAD:8265 -- train --scenario dedgeai --algo lad --episodes 60
  RAY_ADDRESS=http://HEAD:8265 aigc-edge submit --retries 2 -- train --scenario collab-exit/peak --algo d2sac
  aigc-edge submit --home /shared/aigc-edge --tracking-uri http://mlflow:5000 -- evaluate --scenario dedgeai --policy greedy

The project folder is shipped as the job's working directory; run state goes to --home (default:
this machine's absolute $AIGC_EDGE_HOME, right when the nodes share its filesystem) and runs to
--tracking-uri (default $MLFLOW_TRACKING_URI, else the SQLite store under --home). RAY_AUTH_MODE
is passed on (the Makefile exports `token`); from another machine also set RAY_AUTH_TOKEN. With
--retries N a FAILED job (a node lost, say) is submitted again with --resume, up to N times.
"""


def register(subparsers, parents) -> None:
    p = subparsers.add_parser("submit", parents=parents, help="run an aigc-edge command as a Ray job on a cluster",
                              description="Submit `aigc-edge <command>` as a Ray job and stream its logs.",
                              epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", default=None, help="absolute run-state folder on the cluster (default: $AIGC_EDGE_HOME)")
    p.add_argument("--retries", type=int, default=0, help="resubmit a FAILED train/tune job with --resume (default 0)")
    p.add_argument("--entrypoint-cpus", type=float, default=0.0,
                   help="CPUs reserved for the job's driver (default 0: it runs beside its tasks)")
    # not dest "command": that one names the subcommand (submit) in the CLI's error lines
    p.add_argument("job_command", metavar="command", nargs=argparse.REMAINDER,
                   help="-- then the aigc-edge subcommand and its arguments")
    p.set_defaults(handler=run)


def run(args) -> int:
    from cluster.jobs import stderr, submit

    command = args.job_command[1:] if args.job_command[:1] == ["--"] else args.job_command
    outcome = submit(command, args.address, home=args.home, tracking_uri=args.tracking_uri,
                     retries=args.retries, entrypoint_num_cpus=args.entrypoint_cpus, log=stderr)
    emit({"job_id": outcome.job_id, "status": outcome.status, "attempts": outcome.attempts,
          "wall_s": round(outcome.wall_s, 2)}, args.json)
    return 0 if outcome.status == "SUCCEEDED" else 1
