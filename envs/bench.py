"""`aigc-edge bench env`: decisions per second of the vectorised core and one Gymnasium env's step.

Both are measured in the same process, one thread, random actions drawn ahead of time, so the
figures are comparable as a ratio even on a noisy machine.
"""
from __future__ import annotations

import os
import time

import numpy as np

from envs.gym_env import EdgeEnv
from envs.scenarios import load_scenario, make_core, scenario_name


def _timed(run_once, seconds: float) -> tuple[int, float]:
    """Call `run_once` (returns work units) until `seconds` pass; (units, elapsed)."""
    units, start = 0, time.perf_counter()
    while True:
        units += run_once()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return units, elapsed


def vector_decisions_per_s(config, batch: int, seconds: float, seed: int = 0) -> float:
    core = make_core(config, num_envs=batch, seed=seed)
    actions = np.random.default_rng(seed).integers(0, core.encoding.n, size=(64, batch))
    state = {"i": 0}

    def run_once() -> int:
        result = core.step(actions[state["i"] % 64])
        core.observe()
        if result.done.any():
            core.reset(result.done)
        state["i"] += 1
        return batch

    run_once()  # warm up
    units, elapsed = _timed(run_once, seconds)
    return units / elapsed


def single_env_step_us(config, seconds: float, seed: int = 0) -> float:
    env = EdgeEnv(config)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, env.action_space.n, size=4096).tolist()
    state = {"i": 0}

    def run_once() -> int:
        _, _, _, truncated, _ = env.step(actions[state["i"] % 4096])
        if truncated:
            env.reset()
        state["i"] += 1
        return 1

    units, elapsed = _timed(run_once, seconds)
    return elapsed / units * 1e6


def bench_env(args) -> dict:
    overrides = list(getattr(args, "overrides", []))
    config = load_scenario(args.scenario, overrides)
    if getattr(config, "episode_stream", None) == "public":
        # The public stream is drawn episode by episode in Python (its fidelity is the point);
        # the throughput figure is about the batched core, so measure it on the batched stream.
        config = load_scenario(args.scenario, overrides + ["episode_stream=generator"])
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    vector = vector_decisions_per_s(config, args.batch, args.seconds)
    single = single_env_step_us(config, args.seconds)
    return {"scenario": scenario_name(config), "batch": args.batch,
            "vector_decisions_per_s": round(vector), "single_env_step_us": round(single, 2),
            "omp_num_threads": threads}
