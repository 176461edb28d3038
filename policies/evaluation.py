"""Evaluate any Policy on any scenario: the figures `aigc-edge evaluate` prints.

Episodes run as vectorised copies; every copy runs exactly one episode per round, so N episodes
are N simulated episodes. `mean_delay_s` is the mean over episodes of each episode's mean
per-task delay (how the LAD-TS paper and its code report it); percentiles pool every task.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.scenarios import ScenarioConfig, make_core, scenario_name
from policies.base import Policy
from policies.catalog import make_policy

MAX_PARALLEL_EPISODES = 32


@dataclass
class EpisodeLog:
    """Per-task outcomes of finished episodes, collected round by round."""
    delays: list[np.ndarray] = field(default_factory=list)
    rewards: list[np.ndarray] = field(default_factory=list)
    quality: list[np.ndarray] = field(default_factory=list)
    missed: list[np.ndarray] = field(default_factory=list)


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


# ---- the episodes a training run played -------------------------------------------------------
# Episodes differ a lot in load, so a run is compared with a heuristic on exactly its episodes.
# An episode is not always a function of its number alone: dedgeai-corrected (the `generator`
# episode stream) draws each slot's tasks as its copy begins the slot, from one generator for
# all copies, so the heuristic must step the simulator exactly as the run did. When a copy begins
# a slot or an episode depends on the tasks alone, not on the policy, so that can be replayed.

def _finished(delay: float, reward: float, decisions: int) -> dict:
    return {"mean_delay_s": delay / decisions, "mean_reward": reward / decisions, "decisions": int(decisions)}


def on_runner_episodes(config: ScenarioConfig, policy: Policy, seed: int, num_envs: int,
                       episodes: int) -> list[dict]:
    """`policy` on exactly the episodes a run of our agents played on one env runner with this
    seed, numbered as the run numbers them (by start): the core is stepped as `EdgeDecisionRunner`
    steps it, `num_envs` copies in lockstep, a finished copy restarted at once, in row order,
    until `episodes` have started."""
    core = make_core(config, num_envs=num_envs, seed=seed)
    rows = np.arange(num_envs)
    active, number = rows < episodes, rows.copy()
    started = int(active.sum())
    delay, reward, length = np.zeros(num_envs), np.zeros(num_envs), np.zeros(num_envs, np.int64)
    out: list[dict] = [{} for _ in range(episodes)]
    while active.any():
        actions = core.encoding.check(policy.decide(core.observe(), core.network_state()))
        result = core.step(actions, None if active.all() else active)
        delay[active] += result.delay_s[active]
        reward[active] += result.reward[active]
        length[active] += 1
        ended = rows[active & result.done]
        for r in ended:
            out[number[r]] = _finished(delay[r], reward[r], length[r])
        active[ended] = False
        delay[ended], reward[ended], length[ended] = 0.0, 0.0, 0
        restart = ended[:max(0, min(ended.size, episodes - started))]
        if restart.size:
            core.reset(np.isin(rows, restart))
            active[restart] = True
            number[restart] = started + np.arange(restart.size)
            started += restart.size
    return out


def on_rllib_run_episodes(config: ScenarioConfig, policy: Policy, seed: int, num_envs: int,
                          episodes: int, shared_form: bool, resumed_at: Sequence[int] = ()) -> list[dict]:
    """`policy` on exactly the first `episodes` episodes an RLlib run with this seed finished on
    its local env runner, in the order it finished them. RLlib's runners step their `num_envs`
    envs in lockstep, one decision each per step; a finished env spends the next step on its
    reset (next-step autoreset); finished episodes are reported in that order, ties by env
    index. `shared_form`: one policy on one vector env of `num_envs` copies, replayed as RLlib
    steps it; otherwise `num_envs` turn-based envs (one policy per BS), sub-env i seeded with
    seed + i. `resumed_at`: the episode counts at which the run was resumed; a restored env
    runner builds its envs anew, so each part of the run plays a fresh run's first episodes."""
    bounds = [0, *resumed_at, episodes]
    if any(b < a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"resumed_at must rise from 0 to episodes={episodes}, got {list(resumed_at)}")
    parts = [b - a for a, b in zip(bounds, bounds[1:])]
    fresh = _on_fresh_rllib_run(config, policy, seed, num_envs, max(parts), shared_form)
    return [episode for n in parts for episode in fresh[:n]]


def _on_fresh_rllib_run(config: ScenarioConfig, policy: Policy, seed: int, num_envs: int,
                        episodes: int, shared_form: bool) -> list[dict]:
    if shared_form:
        return _on_rllib_vector_env(config, policy, seed, num_envs, episodes)
    streams = [seed + i for i in range(num_envs)]
    per_stream = 2 * (episodes // num_envs) + 4
    logs = {s: run_episodes(config, policy, per_stream, seed=s) for s in streams}
    # Each turn-based env has a core of its own: its k-th episode is the k-th of its stream only
    # where whole episodes are drawn from the stream (dedgeai's public tape), not where tasks are
    # drawn as copies run. Check on one episode instead of assuming.
    alone = run_episodes(config, policy, 1, seed=streams[0])
    if not np.array_equal(alone.delays[0], logs[streams[0]].delays[0]):
        raise NotImplementedError("this scenario draws tasks as its copies run: pairing a turn-based "
                                  "RLlib run needs one core per env, which is not implemented")
    order = rllib_episode_order({s: [len(d) for d in log.delays] for s, log in logs.items()},
                                num_envs, episodes)
    return [{**_finished(logs[s].delays[k].sum(), logs[s].rewards[k].sum(), len(logs[s].delays[k])),
             "stream": s, "draw": k} for s, k in order]


def rllib_episode_order(lengths: dict[int, list[int]], num_envs: int, episodes: int) -> list[tuple[int, int]]:
    """Which episode, as (stream, draw index), each of the first `episodes` episodes of RLlib's
    `num_envs` lockstep envs finished was; env i plays stream `sorted(lengths)[i]`, whose episodes
    have `lengths` decisions."""
    streams = sorted(lengths)
    if len(streams) != num_envs:
        raise ValueError(f"{len(streams)} streams for {num_envs} envs")
    drawn = [0] * num_envs

    def draw(env: int, start: int) -> tuple[float, tuple[int, int] | None, int]:
        k, stream = drawn[env], streams[env]
        if k >= len(lengths[stream]):
            return math.inf, None, env                       # an error only if it is needed
        drawn[env] += 1
        return start + lengths[stream][k] - 1, (stream, k), env   # the step it finishes at

    running = [draw(env, 1) for env in range(num_envs)]
    order: list[tuple[int, int]] = []
    while len(order) < episodes:
        finish, episode, env = min(running, key=lambda r: (r[0], r[2]))
        if episode is None:
            raise ValueError(f"the streams' {sum(map(len, lengths.values()))} episodes are not "
                             f"enough for {episodes} finished ones")
        order.append(episode)
        running[env] = draw(env, finish + 2)
    return order


def _on_rllib_vector_env(config: ScenarioConfig, policy: Policy, seed: int, num_envs: int,
                         episodes: int) -> list[dict]:
    from envs.gym_env import VectorEdgeEnv

    env = VectorEdgeEnv(config, num_envs=num_envs, seed=seed)
    env.reset(seed=seed)                       # as RLlib's runner does first
    core, rows = env.core, np.arange(num_envs)
    deciding = np.ones(num_envs, bool)         # False on a copy's reset step
    delay, reward, length = np.zeros(num_envs), np.zeros(num_envs), np.zeros(num_envs, np.int64)
    out: list[dict] = []
    while len(out) < episodes:
        actions = core.encoding.check(policy.decide(core.observe(), core.network_state()))
        _, rew, _, truncated, infos = env.step(actions)
        delay[deciding] += infos["delay_s"][deciding]
        reward[deciding] += rew[deciding]
        length[deciding] += 1
        for r in rows[truncated]:
            out.append(_finished(delay[r], reward[r], length[r]))
        delay[truncated], reward[truncated], length[truncated] = 0.0, 0.0, 0
        deciding = ~truncated
    return out[:episodes]


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
        policy = make_policy(str(policy), config, seed)
    log = run_episodes(config, policy, episodes, seed, progress)
    probe = make_core(config, num_envs=1)
    return summarise(log, scenario_name(config), policy.name, probe.has_quality, probe.has_deadlines)
