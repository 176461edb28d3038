"""Where an iteration of RLlib's DQN / SAC goes in the faithful form (20 policies, turn-based env).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/agents/rllib_replay_profile.py \
        [--algo dqn] [--capacity 60000] [--iterations 40] [--profile-from 30] [--gc-freeze-from N]

Builds the benchmark's configuration (10 turn-based envs, RLlib's timers) with a smaller buffer,
so that it is full and evicting after ~25 iterations instead of ~180, then prints one JSON line per
iteration (wall and garbage-collection seconds, the buffer's fill) and cProfile's top functions
over the iterations from `--profile-from` on (cumulative, then own time). cProfile roughly
doubles the wall time of pure-Python code: read its figures as shares, not as seconds.

`--gc-freeze-from N` measures instead what `TurnBasedDQN` / `TurnBasedSAC`'s frozen heap
(`policies/baselines/replay.py: _FrozenHeapMixin`) saves once the buffer is big: iterations run
with it until N, then alternately without and with it; the summary compares the two kinds of
iteration in the same process.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cluster.connect import connect  # noqa: E402
from policies.registry import algorithm_config  # noqa: E402


class GcClock:
    """Seconds spent in the garbage collector, from its own start/stop callbacks."""

    def __init__(self):
        self.seconds, self._started = 0.0, 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algo", choices=["dqn", "sac"], default="dqn")
    ap.add_argument("--capacity", type=int, default=60_000, help="buffer capacity in decisions")
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--profile-from", type=int, default=30, help="first profiled iteration")
    ap.add_argument("--gc-freeze-from", type=int, default=None,
                    help="no profile: from this iteration on, alternate iterations without and with _FrozenHeapMixin")
    args = ap.parse_args(argv)

    import ray
    clock = GcClock()
    connect(1)
    env_config = {"scenario": "dedgeai", "overrides": ["form=multi-agent"], "seed": 0}
    cfg = algorithm_config(args.algo, env_config, num_envs=10, seed=0)
    cfg = cfg.training(replay_buffer_config={**cfg.replay_buffer_config, "capacity": args.capacity})
    algo = cfg.build_algo()
    profile = cProfile.Profile()
    comparing = args.gc_freeze_from is not None
    walls = {True: [], False: []}
    try:
        for i in range(args.iterations):
            profiled = not comparing and i >= args.profile_from
            frozen = not comparing or i < args.gc_freeze_from or (i - args.gc_freeze_from) % 2 == 1
            algo.freeze_heap = frozen
            gc_before, started = clock.seconds, time.perf_counter()
            if profiled:
                profile.enable()
            algo.train()
            wall = time.perf_counter() - started
            if profiled:
                profile.disable()
            if comparing and i >= args.gc_freeze_from:
                walls[frozen].append(wall)
            buffer = algo.local_replay_buffer
            print(json.dumps({"iteration": i, "wall_s": round(wall, 2), "frozen": frozen,
                              "gc_s": round(clock.seconds - gc_before, 2), "profiled": profiled,
                              "buffer_steps": buffer.get_num_timesteps(), "episodes_held": len(buffer.episodes),
                              "episodes_evicted": buffer.get_num_episodes_evicted()}), flush=True)
    finally:
        algo.stop()
        ray.shutdown()
    if comparing:
        print(json.dumps({"iterations_each": len(walls[True]),
                          "median_wall_s_default": round(float(np.median(walls[False])), 2),
                          "median_wall_s_frozen": round(float(np.median(walls[True])), 2),
                          "default_over_frozen": round(float(np.median(walls[False]) / np.median(walls[True])), 3)}))
        return 0
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(40)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
