"""Simulator throughput against a per-task Python baseline, all in one process, one thread.

The baseline steps `dedgeai` one task at a time the way the public LAD-TS environment does
(per-task NumPy scalar arithmetic, the state rebuilt with `np.hstack`, tasks in nested lists);
it is this project's rewrite, for timing only (tests/test_dedgeai.py checks the core's delays).
Figures are reported as ratios to that baseline because this machine is noisy.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_env.py [--seconds 3] [--out benchmarks/results/env.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from envs.bench import single_env_step_us, vector_decisions_per_s
from envs.dedgeai import DedgeaiConfig
from envs.scenarios import load_scenario


class PerTaskBaseline:
    """dedgeai stepped task by task, as the public code's environment does."""

    def __init__(self, config: DedgeaiConfig, seed: int = 0):
        self.config = config
        self.f, self.r = config.es_capacities(), config.bs_rates()
        c, q, o = config.position_tasks()
        self.work, self.result = list(c * q), list(o)
        self.rng = np.random.RandomState(seed)
        self.new_episode()

    def new_episode(self):
        cfg = self.config
        self.tasks = [[self.rng.uniform(*cfg.input_mbit, size=self.rng.randint(1, cfg.max_tasks + 1))
                       for _ in range(cfg.n_bs)] for _ in range(cfg.slots)]
        self.queue = np.zeros((cfg.slots + 1, cfg.n_bs))
        self.placed = np.zeros((cfg.slots + 1, cfg.n_bs))
        self.t, self.b, self.n = 0, 0, 0

    def state(self):
        return np.hstack([self.tasks[self.t][self.b][self.n], self.work[self.n] * 1.0, self.queue[self.t]])

    def step(self, action: int) -> float:
        t, b, n = self.t, self.b, self.n
        wait = (self.queue[t][action] + self.placed[t][action]) / self.f[action]
        delay = self.work[n] / self.f[action] + self.result[n] / self.r[action] + wait
        if action != b:
            delay += self.tasks[t][b][n] / self.r[action]
        self.placed[t][action] += self.work[n]
        self.n += 1
        if self.n == len(self.tasks[t][b]):
            self.n, self.b = 0, self.b + 1
            if self.b == self.config.n_bs:
                self.queue[t + 1] = np.maximum(self.queue[t] + self.placed[t] - self.f, 0)
                self.t, self.b = self.t + 1, 0
                if self.t == self.config.decided_slots:
                    self.new_episode()
        return delay


def baseline_decisions_per_s(config: DedgeaiConfig, seconds: float) -> float:
    env = PerTaskBaseline(config)
    actions = np.random.default_rng(0).integers(0, config.n_bs, size=4096).tolist()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in actions[:512]:
            env.state()
            env.step(a)
        count += 512
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", default="benchmarks/results/env.md")
    args = parser.parse_args()

    config = load_scenario("dedgeai", ["episode_stream=generator"])
    rows = [("per-task Python baseline (public-code style)", 1, baseline_decisions_per_s(config, args.seconds))]
    for batch in (1, 64, 1024, 4096):
        rows.append((f"vectorised core, B={batch}", batch, vector_decisions_per_s(config, batch, args.seconds)))
    single_us = single_env_step_us(config, args.seconds)
    rows.append(("Gymnasium single env (EdgeEnv.step)", 1, 1e6 / single_us))

    base = rows[0][2]
    lines = [f"# Simulator throughput: dedgeai (faithful), one thread",
             "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. "
             f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_env.py`.",
             "",
             "| what | copies | decisions/s | vs baseline |",
             "|---|---:|---:|---:|"]
    for name, batch, rate in rows:
        lines.append(f"| {name} | {batch} | {rate:,.0f} | {rate / base:.1f}x |")
    lines += ["", f"Single Gymnasium env step: {single_us:.1f} microseconds."]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
