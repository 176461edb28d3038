"""`aigc-edge train`: a thin shell over `policies.training.train`."""
from __future__ import annotations

import argparse

from cluster.output import TrainingProgressBar, emit, progress
from policies.options import ModelOptions, SACOptions
from policies.registry import ALGO_NAMES, ALGORITHMS, describe_options

EXAMPLES = """examples:
  aigc-edge train --scenario dedgeai --algo lad --episodes 60 --json
  aigc-edge train --scenario dedgeai --algo lad --set scenario_overrides=[form=multi-agent]
  aigc-edge train --scenario collab-exit/urban --algo d2sac --set training.actor_lr=0.001
  aigc-edge train --scenario dedgeai --algo sac --resume   # continue after a kill
  aigc-edge train --scenario dedgeai-corrected --algo sac-mlp --set training.hindsight_credit.share=0.5
  aigc-edge train --scenario dedgeai-corrected --algo sac-mlp --set model.network=per-action \\
      --set model.hidden=32 --set model.critic_hidden=32 --set training.hindsight_credit.share=1.0 \\
      --set training.hindsight_credit.horizon=2   # beats greedy from scratch (docs/agents.md)
  aigc-edge train --scenario dedgeai-corrected --algo sac-mlp \\
      --set training.demonstrations.policy=size-split:1.75:0.9 \\
      --set training.demonstrations.decisions=300000 --set training.demonstrations.pretrain_updates=10000
  aigc-edge train --scenario dedgeai --algo lad --set num_env_runners=2   # two remote samplers
"""


def options_help() -> str:
    """The options users set with --set, from the schemas (policies/options.py)."""
    from policies.training import TrainConfig

    run = [f"  {name}  default {info.default!r}  {info.description or ''}".rstrip()
           for name, info in TrainConfig.model_fields.items() if name not in ("training", "model")]
    rllib = [line for spec in ALGORITHMS.values() if not spec.ours
             for line in (f"  {spec.name}:", *describe_options(spec.options, "  training"))]
    return "\n".join([
        "run options (--set NAME=VALUE):", *run,
        "", "training options of lad, d2sac, sac-mlp (--set training.NAME=VALUE):",
        *describe_options(SACOptions, "training"),
        "", "model options of lad, d2sac, sac-mlp (--set model.NAME=VALUE):",
        *describe_options(ModelOptions, "model"),
        "", "training options of RLlib's sac, ppo, dqn (and any other keyword of RLlib's "
            "AlgorithmConfig.training()):", *rllib,
    ])


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "train", parents=parents, help="train an agent (LAD, D2SAC, or RLlib PPO/DQN/SAC) on a scenario",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an agent on a scenario: checkpoints, resume, MLflow tracking and the policy artifact "
                    "(registered as aigc-edge-policy-<scenario>@champion).",
        epilog=EXAMPLES + "\n" + options_help())
    p.add_argument("--scenario", default=None, help="preset name or YAML path (default dedgeai)")
    p.add_argument("--algo", default=None, choices=ALGO_NAMES, help="agent (default lad)")
    p.add_argument("--episodes", type=int, default=None, help="simulated episodes (default 60)")
    p.add_argument("--config", default=None, help="YAML file of TrainConfig fields")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--topology", default=None,
                   help="serve-sim: the serving topology YAML to simulate (sugar for --set scenario_overrides=[topology=F])")
    p.set_defaults(handler=run)


def run(args) -> int:
    from cluster.connect import connect
    from envs.config import load_config
    from policies.tracking import MlflowTrainingRecorder
    from policies.training import TrainConfig, train

    base = {}
    for key in ("scenario", "algo", "episodes", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    if args.topology:     # the router's policy trains on a simulation of this very deployment
        from pathlib import Path
        base["scenario_overrides"] = [f"topology={Path(args.topology).resolve()}"]
    cfg = load_config(TrainConfig, args.config, args.overrides, base=base)
    progress(f"training {cfg.algo} on {cfg.scenario} for {cfg.episodes} episodes ({cfg.name()})")
    ray = connect(cfg.num_cpus)
    try:
        result = train(cfg, resume=args.resume, callbacks=[TrainingProgressBar(), MlflowTrainingRecorder()])
    finally:
        ray.shutdown()
    emit(result, args.json)
    return 0
