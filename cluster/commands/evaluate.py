"""`aigc-edge evaluate`: run a policy on a scenario and report delay, quality and reward."""
from __future__ import annotations

import argparse

from cluster.output import emit, progress
from envs.scenarios import load_scenario, preset_names
from policies.evaluation import evaluate
from policies.catalog import POLICY_SPECS

EXAMPLES = """examples:
  aigc-edge evaluate --scenario dedgeai --policy greedy --episodes 5
  aigc-edge evaluate --scenario collab-exit/rural --policy fixed-exit:exit1 --json
  aigc-edge evaluate --scenario dedgeai --policy models:/aigc-edge-policy-dedgeai@champion
  aigc-edge evaluate --scenario dedgeai-corrected --policy size-split:1.75:0.9
  aigc-edge evaluate --scenario my-network.yaml --policy least-loaded --set edges.n_edges=6
"""


def register(subparsers, parents) -> None:
    p = subparsers.add_parser(
        "evaluate", parents=parents, help="evaluate a heuristic or trained policy on a scenario",
        description=f"Evaluate a policy. POLICY is {POLICY_SPECS}.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", required=True,
                   help=f"a preset ({', '.join(preset_names())}) or a YAML path")
    p.add_argument("--policy", required=True, help="heuristic or rule name, checkpoint folder or MLflow model URI")
    p.add_argument("--episodes", type=int, default=5, help="simulated episodes (default 5)")
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.episodes < 1:
        raise SystemExit(f"aigc-edge evaluate: error: --episodes must be >= 1, got {args.episodes}")
    config = load_scenario(args.scenario, args.overrides)
    progress(f"evaluating {args.policy} on {args.scenario} for {args.episodes} episodes")
    result = evaluate(config, args.policy, episodes=args.episodes, seed=args.seed, progress=True)
    table = _table(result)
    result.pop("episode_mean_delay_s")
    emit(result, args.json, table)
    return 0


def _table(result: dict) -> str:
    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    per_episode = ", ".join(f"{d:.3f}" for d in result["episode_mean_delay_s"])
    return "\n".join([
        f"scenario            {result['scenario']}",
        f"policy              {result['policy']}",
        f"episodes            {result['episodes']}  ({result['decisions']} decisions)",
        f"mean delay          {result['mean_delay_s']:.3f} s   (per episode: {per_episode})",
        f"p50 / p95 delay     {result['p50_delay_s']:.3f} / {result['p95_delay_s']:.3f} s",
        f"mean quality        {fmt(result['mean_quality'], '.3f')}",
        f"deadline miss rate  {fmt(result['deadline_miss_rate'], '.3%')}",
        f"mean reward         {result['mean_reward']:.4f} per decision",
    ])
