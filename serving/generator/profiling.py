"""Measure a generator into an ExitProfile (envs/profile.py): cost and quality of every exit plan.

- `relative_flops`: FLOPs of one denoising step counted by `torch.utils.flop_counter` per exit,
  averaged over the plan's schedule, divided by the full depth's.
- `ms_per_step_b1` / `ms_per_step_b16`: wall time of whole sampling runs at batch 1 and 16 (guidance
  and scheduler included) divided by the step count; plans timed round-robin in this process, the
  fastest of the repeats kept (the machine is shared: the minimum is the least disturbed figure).
- quality per step count: the classifier's accuracy on class-conditional samples (labels balanced),
  its ratio to the accuracy on real test images, and the FD between the samples' and real test
  images' penultimate features; the real-vs-real FD of two disjoint held-out sets of the same size
  is the floor.
"""
from __future__ import annotations

import datetime as dt
import platform
import time
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from envs.profile import SCHEMA_VERSION, ExitProfile, MachineInfo, ModelInfo, PlanProfile, StepQuality
from serving.generator.checkpoint import Generator
from serving.generator.classifier import classify, frechet_distance, real_floor
from serving.generator.data import load_dataset
from serving.generator.model import FULL_EXIT
from serving.generator.sampling import generate, sample_images


def exit_flops(gen: Generator) -> dict[str, int]:
    """FLOPs of one forward pass per exit at batch 1."""
    unet = gen.unet.eval()
    s = unet.config.sample_size
    x, t, y = torch.zeros(1, unet.config.in_channels, s, s), torch.tensor([500]), torch.tensor([0])
    flops = {}
    for name in unet.exit_names:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            unet(x, t, y, exit=name)
        flops[name] = counter.get_total_flops()
    return flops


def relative_flops(gen: Generator) -> dict[str, float]:
    flops = exit_flops(gen)
    return {name: plan.relative_cost(flops) / flops[FULL_EXIT] for name, plan in gen.plans.items()}


def _step_timer(gen: Generator, plan: str, batch: int, steps: int, bf16: bool | None = None):
    """A function that runs one `steps`-step sampling run and returns its ms per step."""
    defaults = gen.meta.get("sampling", {})
    bf16 = defaults.get("bf16", False) if bf16 is None else bf16
    guidance = defaults.get("guidance_scale", 1.0)
    labels = torch.arange(batch) % gen.num_classes
    rng = torch.Generator().manual_seed(0)

    def once() -> float:
        t0 = time.perf_counter()
        sample_images(gen.unet, gen.scheduler(), labels, gen.plan(plan), steps, guidance, rng, bf16)
        return (time.perf_counter() - t0) * 1000 / steps

    return once


def ms_per_step(gen: Generator, plan: str, batch: int, steps: int = 10, repeats: int = 3,
                bf16: bool | None = None) -> float:
    """Fastest of `repeats` timed runs of one plan, in ms per denoising step (after a warm-up)."""
    once = _step_timer(gen, plan, batch, steps, bf16)
    once()
    return min(once() for _ in range(repeats))


def timing_table(gen: Generator, plans: list[str] | None = None, steps: int = 10, repeats: int = 5,
                 log: Callable[[str], None] = lambda m: None) -> list[dict]:
    """[{plan, relative_flops, ms_per_step_b1, ms_per_step_b16}] for each plan, in one process.

    The plans are timed round-robin (plan A, B, C, A, B, C, ...) and each keeps its fastest run, so
    another process's load lands on all plans alike instead of on whichever ran during it.
    """
    flops = relative_flops(gen)
    plans = plans or list(gen.plans)
    timers = {(p, b): _step_timer(gen, p, b, steps) for p in plans for b in (1, 16)}
    best = {key: float("inf") for key in timers}
    for timer in timers.values():
        timer()  # warm-up
    for _ in range(repeats):
        for key, timer in timers.items():
            best[key] = min(best[key], timer())
    rows = []
    for name in plans:
        row = {"plan": name, "relative_flops": flops[name],
               "ms_per_step_b1": best[(name, 1)], "ms_per_step_b16": best[(name, 16)]}
        log(f"  {name:<14} flops x{row['relative_flops']:.3f}  b1 {row['ms_per_step_b1']:.2f} ms  "
            f"b16 {row['ms_per_step_b16']:.2f} ms")
        rows.append(row)
    return rows


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def profile_generator(gen: Generator, steps_grid: list[int], num_samples: int, batch_size: int = 250,
                      seed: int = 0, log: Callable[[str], None] = lambda m: None,
                      model_id: str | None = None) -> ExitProfile:
    """Measure every plan of `gen` (cost and quality); returns a validated ExitProfile."""
    data = load_dataset(gen.meta["dataset"])
    real_acc, floor = real_floor(gen.classifier, data.test, num_samples, seed=seed)
    log(f"classifier on real test images: accuracy {real_acc:.4f}; real-vs-real FD floor "
        f"({num_samples} vs {num_samples}) {floor:.3f}")
    order = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(seed))
    _, real_feats = classify(gen.classifier, data.test.images[order[:num_samples]])
    labels = np.arange(num_samples) % gen.num_classes
    log("timing (ms per denoising step):")
    timings = {row["plan"]: row for row in timing_table(gen, log=log)}
    plans = []
    for name, plan in gen.plans.items():
        quality = []
        for steps in steps_grid:
            t0 = time.perf_counter()
            images = generate(gen, labels, plan=name, steps=steps, seed=seed, batch_size=batch_size)
            preds, feats = classify(gen.classifier, images)
            acc = float((preds == labels).mean())
            fd = frechet_distance(feats, real_feats)
            quality.append(StepQuality(steps=steps, accuracy=acc, accuracy_ratio=min(acc / real_acc, 1.0), fd=fd))
            log(f"  {name:<14} {steps:>3} steps: accuracy {acc:.3f} (ratio {acc / real_acc:.3f}), "
                f"FD {fd:.2f}  [{time.perf_counter() - t0:.0f} s]")
        row = timings[name]
        plans.append(PlanProfile(name=name, description=plan.description, relative_flops=row["relative_flops"],
                                 ms_per_step_b1=row["ms_per_step_b1"], ms_per_step_b16=row["ms_per_step_b16"],
                                 quality=quality))
    bf16 = gen.meta.get("sampling", {}).get("bf16", False)
    folder = gen.path.name if gen.path else "unsaved"
    return ExitProfile(
        schema_version=SCHEMA_VERSION,
        model=ModelInfo(id=model_id or f"{gen.meta['dataset']}-multi-exit-uvit/{folder}",
                        hash=gen.weights_hash or "unknown"),
        machine=MachineInfo(cpu=cpu_name(), threads=torch.get_num_threads(), torch=torch.__version__,
                            dtype="bfloat16" if bf16 else "float32",
                            measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")),
        real_accuracy=real_acc, real_fd_floor=floor, plans=plans)


def profile_table(profile: ExitProfile, steps: int = 20) -> str:
    """The quality/latency table by plan at one step count (markdown), as the README shows it."""
    full = profile.plan(FULL_EXIT)
    lines = [f"| plan | relative FLOPs | ms/step b1 (x full) | ms/step b16 (x full) | accuracy @{steps} "
             f"| accuracy_ratio @{steps} | FD @{steps} |",
             "|---|---|---|---|---|---|---|"]
    for p in profile.plans:
        q = min(p.quality, key=lambda q: abs(q.steps - steps))
        lines.append(f"| `{p.name}` | {p.relative_flops:.3f} | {p.ms_per_step_b1:.2f} "
                     f"({p.ms_per_step_b1 / full.ms_per_step_b1:.2f}) | {p.ms_per_step_b16:.2f} "
                     f"({p.ms_per_step_b16 / full.ms_per_step_b16:.2f}) | {q.accuracy:.3f} | "
                     f"{q.accuracy_ratio:.3f} | {q.fd:.2f} |")
    lines.append(f"\nReal test images: classifier accuracy {profile.real_accuracy:.4f}; "
                 f"real-vs-real FD floor {profile.real_fd_floor:.2f}.")
    return "\n".join(lines)
