"""Time per denoising step of every exit plan of a generator, as ratios to `full` in the same process.

    .venv/bin/python benchmarks/generator_speed.py [--model DIR] [--repeats 5] [--out benchmarks/results/generator.md]

One thread (`torch.set_num_threads(1)`), bf16 autocast as the model samples by default, classifier-free
guidance included (one forward pass of twice the batch per step), the scheduler step included.
A benchmark, not a timed test: the machine is shared, so read the ratios, not the milliseconds.
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from serving.generator.checkpoint import load_generator
from serving.generator.profiling import cpu_name, timing_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="generator folder (default serving/models/default)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="round-robin timed runs per (plan, batch); the fastest is kept")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = load_generator(args.model)
    rows = timing_table(gen, steps=args.steps, repeats=args.repeats)
    full = next(r for r in rows if r["plan"] == "full")
    lines = [f"Generator `{gen.path.name}` on {cpu_name()} ({platform.machine()}), 1 thread, "
             f"bf16={gen.meta.get('sampling', {}).get('bf16', False)}, guidance "
             f"{gen.meta.get('sampling', {}).get('guidance_scale', 1.0)}, {args.steps}-step runs, "
             f"round-robin, fastest of {args.repeats}.", "",
             "| plan | relative FLOPs | ms/step b1 | x full | ms/step b16 | x full |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['plan']}` | {r['relative_flops']:.3f} | {r['ms_per_step_b1']:.2f} | "
                     f"{r['ms_per_step_b1'] / full['ms_per_step_b1']:.2f} | {r['ms_per_step_b16']:.2f} | "
                     f"{r['ms_per_step_b16'] / full['ms_per_step_b16']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
