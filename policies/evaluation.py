"""Evaluate any Policy on any scenario: the figures `aigc-edge evaluate` prints.

Episodes run as vectorised copies; every copy runs exactly one episode per round, so N episodes
are N simulated episodes. `mean_delay_s` is the mean over episodes of each episode's mean
per-task delay (how the LAD-TS paper and its code report it); percentiles pool every task.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.config import ConfigError
from envs.scenarios import ScenarioConfig, make_core, scenario_name
from policies.base import Policy
from policies.heuristics import HEURISTICS, is_heuristic, make_heuristic

MAX_PARALLEL_EPISODES = 32
MLFLOW_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


@dataclass
class EpisodeLog:
    """Per-task outcomes of finished episodes, collected round by round."""
    delays: list[np.ndarray] = field(default_factory=list)
    rewards: list[np.ndarray] = field(default_factory=list)
    quality: list[np.ndarray] = field(default_factory=list)
    missed: list[np.ndarray] = field(default_factory=list)


def resolve_policy(spec: str, config: ScenarioConfig, seed: int | None = None) -> Policy:
    """A heuristic name, a checkpoint folder or an MLflow model URI -> a Policy for `config`."""
    if is_heuristic(spec):
        core = make_core(config, num_envs=1)
        return make_heuristic(spec, core.encoding, seed)
    location = spec.split("#", 1)[0]  # `<folder>#sample`: a loader option, not part of the path
    if not (location.startswith(MLFLOW_URI_SCHEMES) or Path(location).exists()):
        raise ConfigError(f"policy {spec!r} is not a heuristic ({', '.join(HEURISTICS)}), "
                          "an existing checkpoint folder, or an MLflow URI (models:/..., runs:/...)")
    from policies.artifact import load_policy  # trained agents need torch; heuristics do not

    return load_policy(spec, config)


def run_episodes(config: ScenarioConfig, policy: Policy, episodes: int, seed: int | None = None,
                 progress: bool = False) -> EpisodeLog:
    """`episodes` episodes, up to MAX_PARALLEL_EPISODES at a time on ONE core: episode k is the
    k-th the core draws (a fresh core per round would replay the same seeded episodes)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    log = EpisodeLog()
    core = make_core(config, num_envs=min(episodes, MAX_PARALLEL_EPISODES), seed=seed)
    done_episodes = 0
    while done_episodes < episodes:
        batch = min(episodes - done_episodes, core.num_envs)
        if done_episodes:
            core.reset(np.arange(core.num_envs) < batch)
        _run_round(core, policy, log, progress, done_episodes, episodes, batch)
        done_episodes += batch
    return log


def _run_round(core, policy: Policy, log: EpisodeLog, progress: bool, before: int, total: int,
               copies: int) -> None:
    """Run the first `copies` copies of `core` through one episode; each stops where it finished."""
    B = copies
    trace: dict[str, list[np.ndarray]] = {"live": [], "delay": [], "reward": [], "quality": [], "missed": []}
    live = np.arange(core.num_envs) < copies
    steps, started, expected = 0, time.monotonic(), core.mean_episode_decisions()
    while live.any():
        actions = core.encoding.check(policy.decide(core.observe(), core.network_state()))
        result = core.step(actions, active=None if live.all() else live)
        trace["live"].append(live.copy())
        trace["delay"].append(result.delay_s)
        trace["reward"].append(result.reward)
        trace["quality"].append(result.quality)
        trace["missed"].append(result.deadline_missed)
        live &= ~result.done
        steps += 1
        if progress and steps % 5000 == 0:
            share = min(steps / max(expected, 1.0), 1.0)
            print(f"  episodes {before + 1}-{before + B} of {total}: ~{share:.0%} "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    was_live = np.stack(trace["live"])  # [steps, B]
    columns = {name: np.stack(values) for name, values in trace.items() if name != "live"}
    for copy in range(B):
        when = was_live[:, copy]
        log.delays.append(columns["delay"][when, copy])
        log.rewards.append(columns["reward"][when, copy])
        log.quality.append(columns["quality"][when, copy])
        log.missed.append(columns["missed"][when, copy])


def summarise(log: EpisodeLog, scenario: str, policy: str, has_quality: bool,
              has_deadlines: bool) -> dict:
    delays = np.concatenate(log.delays)
    return {
        "scenario": scenario,
        "policy": policy,
        "episodes": len(log.delays),
        "mean_delay_s": float(np.mean([d.mean() for d in log.delays])),
        "p50_delay_s": float(np.percentile(delays, 50)),
        "p95_delay_s": float(np.percentile(delays, 95)),
        "mean_quality": float(np.concatenate(log.quality).mean()) if has_quality else None,
        "deadline_miss_rate": float(np.concatenate(log.missed).mean()) if has_deadlines else None,
        "mean_reward": float(np.concatenate(log.rewards).mean()),
        "episode_mean_delay_s": [float(d.mean()) for d in log.delays],
        "episode_mean_reward": [float(r.mean()) for r in log.rewards],
        "decisions": int(delays.size),
    }


def evaluate(config: ScenarioConfig, policy: Policy | str, episodes: int = 5, seed: int | None = None,
             progress: bool = False) -> dict:
    """Run `episodes` episodes of `policy` (a Policy or a spec string) and summarise them."""
    if isinstance(policy, (str, Path)):
        policy = resolve_policy(str(policy), config, seed)
    log = run_episodes(config, policy, episodes, seed, progress)
    probe = make_core(config, num_envs=1)
    return summarise(log, scenario_name(config), policy.name, probe.has_quality, probe.has_deadlines)
