"""`aigc-edge bench generator`: ms per denoising step of every exit plan at batch 1 and 16, in one process.

Ratios against the plan `full` measured in the same process are what to read on a noisy machine.
"""
from __future__ import annotations

import sys
import time

import torch


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_generator(args) -> dict:
    """{plans: [{plan, relative_flops, ms_per_step_b1, ms_per_step_b16}], images_per_s, ...}."""
    from serving.generator.checkpoint import load_generator
    from serving.generator.profiling import timing_table
    from serving.generator.sampling import generate

    torch.set_num_threads(1)
    gen = load_generator(getattr(args, "model", None))
    steps = gen.meta.get("sampling", {}).get("steps", 20)
    progress(f"timing {len(gen.plans)} plans of {gen.path} (10-step runs, round-robin, fastest of 5, 1 thread)")
    rows = timing_table(gen, steps=10, repeats=5, log=progress)
    full = next(r for r in rows if r["plan"] == "full")
    for row in rows:
        row["ratio_b1_vs_full"] = row["ms_per_step_b1"] / full["ms_per_step_b1"]
        row["ratio_b16_vs_full"] = row["ms_per_step_b16"] / full["ms_per_step_b16"]
    labels = [i % gen.num_classes for i in range(16)]
    generate(gen, labels, plan="full", steps=2)  # warm-up
    t0 = time.perf_counter()
    generate(gen, labels, plan="full", steps=steps)
    images_per_s = len(labels) / (time.perf_counter() - t0)
    return {"plans": rows, "images_per_s": images_per_s, "images_per_s_plan": "full", "images_per_s_steps": steps,
            "images_per_s_batch": len(labels), "threads": torch.get_num_threads()}
