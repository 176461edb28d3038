"""`aigc-edge transfer --source A --target B [--reuse MODE]`: one pair, against scratch, on Ray Tune."""
from __future__ import annotations

import argparse

from cluster.output import emit, progress
from policies.registry import ALGO_NAMES
from tuning.experiment import REUSE_MODES

EXAMPLES = """examples:
  aigc-edge transfer --source collab-exit/urban --target collab-exit/peak --reuse both --json
  aigc-edge transfer --source urban --target my-network.yaml --reuse init   # your own family
  aigc-edge transfer --source serve-sim:serving/topologies/default.yaml \\
      --target serve-sim:serving/topologies/node-slowed.yaml --reuse both   # adapt the router
Reuse modes (reconstructions of Tian et al.'s policy reuse, docs/transfer.md): none = scratch;
init = start from the source's weights; pi-reuse = the frozen source acts with probability psi,
decaying per decision, reset per episode (Fernandez & Veloso); both. pi-reuse needs an off-policy
learner: lad, d2sac, sac-mlp. RLlib's ppo/dqn/sac start from a source with
`aigc-edge train --set init_from=RUN_FOLDER` (init only).
A serve-sim target registers the adapted policy as aigc-edge-policy-serve-sim@champion: a running
endpoint that follows that alias takes it with no dropped request.
"""


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "transfer", parents=parents, help="transfer a policy to another network (policy reuse) vs scratch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a source policy (once), then fine-tune on the target with a reuse mode and from "
                    "scratch, and report the transfer metrics (jumpstart, asymptotic gain, normalised AUC, "
                    "transfer ratio, steps to threshold).",
        epilog=EXAMPLES)
    p.add_argument("--source", required=True, help="source family: preset, YAML file, or serve-sim:TOPOLOGY.yaml")
    p.add_argument("--target", required=True, help="target family (same forms)")
    p.add_argument("--reuse", default="both", choices=REUSE_MODES, help="reuse mode (default both)")
    p.add_argument("--algo", default=None, choices=ALGO_NAMES,
                   help="agent (default: the experiment file's: lad, sac-mlp for serve-sim)")
    p.add_argument("--episodes", type=int, default=None, help="target budget in episodes")
    p.add_argument("--source-episodes", type=int, default=None, help="episodes of the source's training")
    p.add_argument("--config", default=None,
                   help="experiment YAML to take the other fields from (default tuning/experiments/transfer.yaml, "
                        "serve-sim.yaml for serve-sim targets)")
    p.add_argument("--resume", action="store_true", help="continue this pair's experiment after a kill")
    p.add_argument("--no-register", action="store_true", help="serve-sim: do not register the adapted policy")
    p.set_defaults(handler=run)


def experiment_for(args):
    from envs.config import load_config, read_yaml
    from tuning.experiment import ExperimentConfig, check_reuse_mode, default_experiment_file
    from tuning.families import resolve_family

    source, target = resolve_family(args.source, "--source"), resolve_family(args.target, "--target")
    # The file's other fields (budgets, options); this pair, mode, algo and seed win.
    base = read_yaml(args.config or default_experiment_file(target.scenario))
    algo = args.algo or base.get("algo", "lad")
    check_reuse_mode(algo, args.reuse)
    seed = 0 if args.seed is None else args.seed
    base.update(name=f"transfer-{source.slug}-to-{target.slug}-{args.reuse}-{algo}-s{seed}", algo=algo,
                pairs=[{"source": args.source, "target": args.target}], seeds=[seed],
                modes=["none"] if args.reuse == "none" else ["none", args.reuse])
    if args.episodes is not None:
        base["target_episodes"] = args.episodes
    if args.source_episodes is not None:
        base["source_episodes"] = args.source_episodes
    return load_config(ExperimentConfig, None, args.overrides, base=base)


def run(args) -> int:
    from cluster.connect import run_tune_experiment

    exp = experiment_for(args)
    progress(f"transfer {args.source} -> {args.target} ({args.reuse}, {exp.algo}, seed {exp.seeds[0]}): "
             f"source {exp.source_episodes} episodes, target budget {exp.target_episodes} episodes")
    summary = run_tune_experiment(exp, resume=args.resume,
                                  command=f"aigc-edge transfer --source {args.source} --target {args.target} "
                                          f"--reuse {args.reuse} --algo {exp.algo}")
    if summary is None:
        return 130
    row = next(t for t in summary["trials"] if t["reuse"] == args.reuse)
    result = {"source": args.source, "target": args.target, "reuse": args.reuse, "algo": exp.algo,
              **{k: row[k] for k in ("jumpstart", "asymptotic_gain", "auc_norm", "transfer_ratio",
                                     "steps_to_threshold", "scratch_steps_to_threshold", "final_return",
                                     "censored", "run_id", "final_latency_s", "steps_to_scratch_final_latency",
                                     "scratch_steps_to_final_latency")},
              "parent_run_id": summary["parent_run_id"], "report": summary["report"]}
    if exp.pairs[0].target.startswith("serve-sim:") and not args.no_register:
        from tuning.registry import register_adapted_policy
        result["model_uri"] = register_adapted_policy(exp, row)
        progress(f"registered the adapted router policy: {result['model_uri']}")
    emit(result, args.json)
    return 0
