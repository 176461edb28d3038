"""`aigc-edge generator train|profile|sample`: the multi-exit U-ViT, thin shells over `serving.generator`."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from cluster.output import emit, progress

TRAIN_EXAMPLES = """examples:
  aigc-edge generator train --quick                       # digits, tiny model, < 1 minute
  aigc-edge generator train --out serving/models/default --grids docs/generator
                                                          # the shipped default (Fashion-MNIST, ~30 min)
  aigc-edge generator train --set train.minutes=60 --set model.hidden_size=192
"""
PROFILE_EXAMPLES = """examples:
  aigc-edge generator profile                             # default model -> serving/profiles/default.json
  aigc-edge generator profile --model DIR --out /tmp/p.json --set profile.num_samples=200
  aigc-edge generator profile --timing-only --json        # only re-measure ms per step on this machine
"""
SAMPLE_EXAMPLES = """examples:
  aigc-edge generator sample --label 7 --out sneaker.png
  aigc-edge generator sample --label 0 --plan exit1 --steps 10 --count 16 --out tshirts.png
  aigc-edge generator sample --label 3 --plan deep-first --scheduler dpm --out dress.png --json
"""


def register(subparsers, parents) -> None:
    p = subparsers.add_parser("generator", help="train, profile or sample the multi-exit U-ViT generator",
                              description="The multi-exit U-ViT generator (serving/generator).",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="examples:\n  aigc-edge generator train --quick\n"
                                     "  aigc-edge generator profile --json\n"
                                     "  aigc-edge generator sample --label 7 --plan exit1 --out sneaker.png\n"
                                     "Run `aigc-edge generator <train|profile|sample> --help` for options.")
    sub = p.add_subparsers(dest="generator_command", metavar="{train,profile,sample}")
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])
    fmt = argparse.RawDescriptionHelpFormatter

    t = sub.add_parser("train", parents=parents, formatter_class=fmt, epilog=TRAIN_EXAMPLES,
                       help="train the generator and its quality classifier (tracked in MLflow)",
                       description="Train the quality classifier and the multi-exit U-ViT jointly at every exit; "
                                   "log params, loss curves, sample grids per exit and the model to MLflow "
                                   "(experiment aigc-edge/generator, model aigc-edge-generator@champion).")
    t.add_argument("--config", default=None, help="YAML config (default serving/generator.yaml)")
    t.add_argument("--dataset", choices=["fashion-mnist", "digits"], default=None,
                   help="data set (default: the config's, fashion-mnist)")
    t.add_argument("--quick", action="store_true", help="digits + a tiny model, under a minute")
    t.add_argument("--out", default=None,
                   help="model folder to write (default $AIGC_EDGE_HOME/checkpoints/generator/<dataset>-<time>)")
    t.add_argument("--grids", default=None, help="folder for the sample-grid PNGs (default beside --out)")
    t.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    t.set_defaults(handler=run_train)

    pr = sub.add_parser("profile", parents=parents, formatter_class=fmt, epilog=PROFILE_EXAMPLES,
                        help="measure cost and quality of every exit plan into an ExitProfile",
                        description="Write the ExitProfile the simulator reads: per plan relative FLOPs, ms per "
                                    "denoising step at batch 1 and 16 on this machine, and classifier accuracy, "
                                    "accuracy_ratio and FD on a grid of step counts.")
    pr.add_argument("--model", default=None, help="generator folder (default serving/models/default)")
    pr.add_argument("--out", default=None, help="profile JSON to write (default serving/profiles/default.json)")
    pr.add_argument("--config", default=None, help="YAML whose `profile:` section sets the grid "
                                                   "(default serving/generator.yaml)")
    pr.add_argument("--timing-only", action="store_true",
                    help="keep the quality of the existing --out profile, re-measure only the timings")
    pr.set_defaults(handler=run_profile)

    s = sub.add_parser("sample", parents=parents, formatter_class=fmt, epilog=SAMPLE_EXAMPLES,
                       help="generate images of one class following an exit plan",
                       description="Generate class-conditional images and write them as one PNG grid.")
    s.add_argument("--label", type=int, required=True, help="class index (Fashion-MNIST: 0=t-shirt .. 9=ankle-boot)")
    s.add_argument("--plan", default="full", help="exit plan (exit1, exit2, exit3, full, deep-first, ...)")
    s.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's, 20)")
    s.add_argument("--count", type=int, default=1, help="images in the grid (default 1)")
    s.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    s.add_argument("--scheduler", default=None, help="ddim (default), ddpm, dpm or euler")
    s.add_argument("--model", default=None, help="generator folder (default serving/models/default)")
    s.add_argument("--out", required=True, help="output PNG file")
    s.set_defaults(handler=run_sample)


def run_train(args) -> int:
    from policies.tracking import checkpoints_dir
    from serving.generator.config import QUICK_OVERRIDES, load_generator_config
    from serving.generator.train import train_generator

    overrides = list(QUICK_OVERRIDES) if args.quick else []
    if args.dataset:
        overrides.append(f"dataset={args.dataset}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    config = load_generator_config(args.config, overrides + list(args.overrides))
    out = Path(args.out) if args.out else \
        checkpoints_dir() / "generator" / f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    progress(f"training the generator on {config.dataset} for up to {config.train.minutes:g} min -> {out}")
    summary = train_generator(config, out, track=not args.no_track, grids_dir=args.grids, log=progress)
    result = {k: summary.get(k) for k in ("dataset", "model_dir", "run_id", "registered_model", "model_version",
                                          "classifier_accuracy", "parameters", "steps", "epochs", "train_wall_s",
                                          "images_per_s", "sample_grids")}
    emit(result, args.json)
    return 0


def run_profile(args) -> int:
    import torch

    from envs.profile import DEFAULT_PROFILE_PATH, load_profile, save_profile
    from serving.generator.checkpoint import load_generator
    from serving.generator.config import load_generator_config
    from serving.generator.profiling import profile_generator, profile_table, timing_table

    config = load_generator_config(args.config, args.overrides).profile
    torch.set_num_threads(1)
    gen = load_generator(args.model)
    out = Path(args.out) if args.out else DEFAULT_PROFILE_PATH
    t0 = time.perf_counter()
    if args.timing_only:
        profile = load_profile(out)
        if profile.model.hash != gen.weights_hash:
            from envs.config import ConfigError
            raise ConfigError(f"timing-only: {out} was measured for another model (weights sha256 "
                              f"{profile.model.hash[:12]}, this model {gen.weights_hash[:12]}); run a full profile")
        rows = {r["plan"]: r for r in timing_table(gen, list(gen.plans), log=progress)}
        for plan in profile.plans:
            if plan.name in rows:
                plan.ms_per_step_b1 = rows[plan.name]["ms_per_step_b1"]
                plan.ms_per_step_b16 = rows[plan.name]["ms_per_step_b16"]
    else:
        progress(f"profiling {gen.path} ({len(gen.plans)} plans x steps {config.steps_grid}, "
                 f"{config.num_samples} samples each)")
        profile = profile_generator(gen, config.steps_grid, config.num_samples, config.batch_size,
                                    seed=args.seed or 0, log=progress)
    save_profile(profile, out)
    progress(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
    result = {"out": str(out), "model": profile.model.id, "real_accuracy": profile.real_accuracy,
              "real_fd_floor": profile.real_fd_floor,
              "plans": [{"plan": p.name, "relative_flops": p.relative_flops, "ms_per_step_b1": p.ms_per_step_b1,
                         "ms_per_step_b16": p.ms_per_step_b16,
                         "quality": [q.model_dump() for q in p.quality]} for p in profile.plans]}
    emit(result, args.json, None if args.json else profile_table(profile) + f"\nwrote {out}")
    return 0


def run_sample(args) -> int:
    import torch

    from envs.config import ConfigError
    from serving.generator.checkpoint import load_generator
    from serving.generator.sampling import generate, image_grid, save_png

    if args.count < 1:
        raise ConfigError(f"count: must be >= 1, got {args.count}")
    if not args.out.lower().endswith(".png"):
        raise ConfigError(f"out: the output file must end in .png, got {args.out!r}")
    torch.set_num_threads(1)
    gen = load_generator(args.model)
    t0 = time.perf_counter()
    images = generate(gen, [args.label] * args.count, plan=args.plan, steps=args.steps,
                      guidance_scale=args.guidance, seed=args.seed or 0, scheduler=args.scheduler)
    seconds = time.perf_counter() - t0
    rows = max(1, int(args.count ** 0.5))
    path = save_png(image_grid(images, rows=rows), args.out, scale=4 if images.shape[-1] < 16 else 2)
    steps = args.steps or gen.meta.get("sampling", {}).get("steps", 20)
    result = {"out": str(path), "label": args.label, "class_name": gen.class_names[args.label],
              "plan": args.plan, "steps": steps, "count": args.count, "seconds": round(seconds, 3)}
    emit(result, args.json)
    return 0
