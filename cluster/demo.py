"""`make demo`: the main job as it stands, on the embedded default (local Ray, SQLite MLflow).

Evaluates the heuristics on the LAD-TS scenario (dedgeai, faithful system model, shared policy),
trains a short LAD agent (tracked in MLflow, registered as the scenario's champion), evaluates
it the same way, and prints one comparison table.
"""
from __future__ import annotations

import sys
import time

from cluster.output import progress
from envs.config import ConfigError
from envs.scenarios import load_scenario
from policies.evaluation import evaluate

DEMO_SCENARIO = "dedgeai"
DEMO_EPISODES = 5
DEMO_HEURISTICS = ("greedy", "least-loaded", "round-robin", "random", "local")
DEMO_TRAIN_EPISODES = 10


def heuristic_rows(scenario: str, episodes: int) -> list[dict]:
    config = load_scenario(scenario)
    rows = []
    for name in DEMO_HEURISTICS:
        started = time.monotonic()
        progress(f"[demo] {name} on {scenario}, {episodes} episodes ...")
        result = evaluate(config, name, episodes=episodes)
        result["wall_s"] = time.monotonic() - started
        rows.append(result)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'policy':<16}{'mean delay s':>14}{'p50 s':>9}{'p95 s':>9}{'mean reward':>13}{'wall s':>9}"]
    for r in rows:
        lines.append(f"{r['policy']:<16}{r['mean_delay_s']:>14.3f}{r['p50_delay_s']:>9.3f}"
                     f"{r['p95_delay_s']:>9.3f}{r['mean_reward']:>13.3f}{r['wall_s']:>9.1f}")
    return "\n".join(lines)


def main() -> int:
    try:
        rows = heuristic_rows(DEMO_SCENARIO, DEMO_EPISODES)
        rows += trained_rows(DEMO_SCENARIO, DEMO_EPISODES)
    except ConfigError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    print(f"\n{DEMO_SCENARIO} (faithful LAD-TS system model), {DEMO_EPISODES} evaluation episodes each:")
    print(format_table(rows))
    if any(r["policy"].startswith("lad") for r in rows):
        print(f"\nThe LAD row is a {DEMO_TRAIN_EPISODES}-episode run: one round of vectorised episodes, "
              "not yet trained.\nThe 60-episode benchmark (docs/agents.md) reaches about 8.1 s "
              "(1.08x greedy on the same episodes); `aigc-edge train --scenario dedgeai --algo lad` runs it.")
    print("\nBrowse the runs with `aigc-edge ui` (MLflow UI on the embedded store).")
    return 0


def trained_rows(scenario: str, episodes: int) -> list[dict]:
    """A short LAD run on the same scenario, evaluated like the heuristics (sampling from pi)."""
    from cluster.connect import connect
    from cluster.output import TrainingProgressBar
    from policies.tracking import MlflowTrainingRecorder
    from policies.training import TrainConfig, train

    config = TrainConfig(scenario=scenario, algo="lad", episodes=DEMO_TRAIN_EPISODES, run_name="demo-lad")
    progress(f"[demo] training LAD on {scenario} for {DEMO_TRAIN_EPISODES} episodes "
             "(a short run: the full 60-episode benchmark is benchmarks/agents/run.py) ...")
    started = time.monotonic()
    ray = connect()
    try:
        trained = train(config, callbacks=[TrainingProgressBar(), MlflowTrainingRecorder()])
    finally:
        ray.shutdown()      # the evaluation below does not need Ray
    result = evaluate(load_scenario(scenario), f"{trained['policy']}#sample", episodes=episodes)
    result["policy"] = f"lad ({DEMO_TRAIN_EPISODES} ep.)"
    result["wall_s"] = time.monotonic() - started
    return [result]


if __name__ == "__main__":
    sys.exit(main())
