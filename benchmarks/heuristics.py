"""Heuristic baselines on every scenario: the reference figures in the README.

    .venv/bin/python benchmarks/heuristics.py [--out benchmarks/results/heuristics.md]

dedgeai (faithful) is evaluated twice: on the public code's own first 5 episodes (the preset's
`episode_stream: public`, unseeded, replays them exactly) and on 30 episodes, reported as
mean +- standard error, because 5 episodes of this scenario vary by about +-0.3 s (greedy)
to +-0.5 s (local). The device scenarios need the shipped ExitProfile and are skipped without it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from envs.config import ConfigError
from envs.scenarios import load_scenario
from policies.evaluation import evaluate

DEDGEAI_POLICIES = ("greedy", "least-loaded", "round-robin", "random", "local")
DEVICE_POLICIES = ("greedy", "least-loaded", "round-robin", "random", "local")
DEVICE_SCENARIOS = ("collab-exit/urban", "collab-exit/rural", "collab-exit/peak",
                    "collab-exit/degraded", "mec-device")
PUBLIC_FIGURES = {"greedy": 7.8, "random": 16.9, "local": 17.4}  # what the issue reports of the public code


def plot_episodes(per_policy: dict[str, np.ndarray], mode: str, out: Path) -> None:
    """Per-episode mean delay of each heuristic: the spread a 5-episode figure is drawn from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.boxplot(list(per_policy.values()), tick_labels=list(per_policy), showmeans=True)
    for i, values in enumerate(per_policy.values(), start=1):
        ax.scatter(np.full(values.size, i) + np.linspace(-0.15, 0.15, values.size), values, s=8, alpha=0.5)
    ax.set_ylabel("mean per-task delay of an episode (s)")
    ax.set_title(f"dedgeai ({mode}): heuristics over 30 episodes")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def dedgeai_table(mode: str, plot_dir: Path) -> list[str]:
    preset = "dedgeai" if mode == "faithful" else "dedgeai-corrected"
    config = load_scenario(preset)
    per_policy = {}
    lines = [f"### dedgeai, {mode} mode (mean per-task delay, s)", "",
             "| policy | first 5 episodes | 30 episodes, mean +- s.e. | public code (issue) | 5-episode deviation |",
             "|---|---:|---:|---:|---:|"]
    for policy in DEDGEAI_POLICIES:
        per_episode = np.array(evaluate(config, policy, episodes=30)["episode_mean_delay_s"])
        per_policy[policy] = per_episode
        first5 = per_episode[:5].mean()
        se = per_episode.std(ddof=1) / np.sqrt(per_episode.size)
        known = PUBLIC_FIGURES.get(policy) if mode == "faithful" else None
        deviation = f"{first5 / known - 1:+.1%}" if known else ""
        lines.append(f"| {policy} | {first5:.3f} | {per_episode.mean():.3f} +- {se:.3f} | "
                     f"{known if known else ''} | {deviation} |")
    image = plot_dir / f"heuristics-dedgeai-{mode}.png"
    plot_episodes(per_policy, mode, image)
    return lines + ["", f"![per-episode delays]({image.name})", ""]


def device_table() -> list[str]:
    lines = ["### Device scenarios (5 episodes, seed 0; reward per decision, higher is better)", "",
             "| scenario | policy | mean reward | mean delay s | p95 delay s | mean quality | deadline misses |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name in DEVICE_SCENARIOS:
        config = load_scenario(name)
        for policy in DEVICE_POLICIES:
            r = evaluate(config, policy, episodes=5, seed=0)
            miss = "n/a" if r["deadline_miss_rate"] is None else f"{r['deadline_miss_rate']:.1%}"
            lines.append(f"| {name} | {policy} | {r['mean_reward']:.4f} | {r['mean_delay_s']:.3f} | "
                         f"{r['p95_delay_s']:.3f} | {r['mean_quality']:.3f} | {miss} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/heuristics.md")
    args = parser.parse_args()
    lines = ["# Heuristic baselines", "", "Command: `.venv/bin/python benchmarks/heuristics.py`.", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines += dedgeai_table("faithful", out.parent) + dedgeai_table("corrected", out.parent)
    try:
        lines += device_table()
    except ConfigError as exc:
        lines += [f"Device scenarios skipped: {exc}", ""]
    text = "\n".join(lines)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
