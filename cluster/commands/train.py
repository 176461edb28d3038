"""`aigc-edge train`: a thin shell over `policies.training.train`."""
from __future__ import annotations

import argparse

from cluster.output import emit, progress


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "train", parents=parents, help="train an agent (LAD, D2SAC, or RLlib PPO/DQN/SAC) on a scenario",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an agent on a scenario; checkpoints, MLflow tracking and the policy artifact.\n"
                    "Examples:\n"
                    "  aigc-edge train --scenario dedgeai --algo lad --episodes 60 --json\n"
                    "  aigc-edge train --scenario dedgeai --algo lad --set scenario_overrides=[form=multi-agent]\n"
                    "  aigc-edge train --scenario collab-exit/urban --algo d2sac --set training.actor_lr=0.001\n"
                    "  aigc-edge train --scenario dedgeai --algo sac --resume   # continue after a kill\n"
                    "  aigc-edge train --scenario dedgeai-corrected --algo sac-mlp --set training.caused_share=0.5\n"
                    "  aigc-edge train --scenario dedgeai-corrected --algo sac-mlp --set model.network=per-action \\\n"
                    "      --set model.hidden=32 --set model.critic_hidden=32 --set training.caused_share=1.0 \\\n"
                    "      --set training.caused_horizon=2   # beats greedy from scratch (README, Results)\n"
                    "  aigc-edge train --scenario dedgeai-corrected --algo sac-mlp --set training.demo_policy=size-split:1.75:0.9 \\\n"
                    "      --set training.demo_decisions=300000 --set training.demo_pretrain_updates=10000\n"
                    "  aigc-edge train --scenario dedgeai --algo lad --set num_env_runners=2   # two remote samplers\n"
                    "Fields for --set: see policies/training.py TrainConfig (training.*, model.*, num_envs, ...);\n"
                    "training.* takes policies/algorithms.py DiffusionSACConfig.OWN_TRAINING and RLlib's\n"
                    "AlgorithmConfig.training() keywords (a typo is refused with the field named).")
    p.add_argument("--scenario", default=None, help="preset name or YAML path (default dedgeai)")
    p.add_argument("--algo", default=None, choices=["lad", "d2sac", "sac-mlp", "sac", "ppo", "dqn"],
                   help="agent (default lad)")
    p.add_argument("--episodes", type=int, default=None, help="simulated episodes (default 60)")
    p.add_argument("--config", default=None, help="YAML file of TrainConfig fields")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.set_defaults(handler=run)


def run(args) -> int:
    from envs.config import load_config
    from policies.training import TrainConfig, train

    base = {}
    for key in ("scenario", "algo", "episodes", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    cfg = load_config(TrainConfig, args.config, args.overrides, base=base)
    progress(f"training {cfg.algo} on {cfg.scenario} for {cfg.episodes} episodes ({cfg.name()})")
    result = train(cfg, resume=args.resume, progress=progress)
    try:
        import ray
        ray.shutdown()
    except ImportError:
        pass
    emit(result, args.json)
    return 0
