"""Train the multi-exit U-ViT jointly at every exit, and its quality classifier, tracked in MLflow.

The loop, in the order things happen: seed and threads; data; the quality classifier; the U-ViT and
its EMA copy; then per step: draw a batch, noise it at random timesteps (v-prediction target),
drop some labels (for classifier-free guidance), split the batch between the exits by
`exit_weights` (each exit gets a loss every step; the full depth the largest share), weight each
sample's loss by min-SNR, step AdamW on a warm-up + cosine learning rate, update the EMA.
The cosine runs over the budget's progress, max(step / max_steps, elapsed / minutes), so a busy
machine shortens the schedule instead of cutting it off mid-decay. The EMA weights are saved.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from policies import tracking
from envs.config import ConfigError
from serving.generator.checkpoint import Generator, load_generator, save_generator, training_scheduler
from serving.generator.classifier import accuracy, train_classifier
from serving.generator.config import GeneratorConfig
from serving.generator.data import load_dataset
from serving.generator.model import MultiExitUViT
from serving.generator.sampling import generate, image_grid, save_png


def min_snr_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample weight of the v-prediction MSE: x0-space weight min(SNR+1, gamma), i.e.
    min(SNR+1, gamma) / (SNR+1) on v (the v-loss already carries a factor SNR+1 in x0 terms)."""
    a = alphas_cumprod[t]
    snr_plus_one = 1.0 / (1.0 - a)  # SNR + 1 = a/(1-a) + 1
    return snr_plus_one.clamp(max=gamma) / snr_plus_one


def exit_split(batch: int, weights: list[float]) -> list[int]:
    """Sizes of the per-exit slices of a batch (largest remainder; every exit with weight > 0 gets >= 1)."""
    w = np.asarray(weights, dtype=np.float64) / sum(weights)
    sizes = np.floor(w * batch).astype(int)
    sizes[(w > 0) & (sizes == 0)] = 1
    while sizes.sum() > batch:
        sizes[sizes.argmax()] -= 1
    order = np.argsort(-(w * batch - np.floor(w * batch)))
    i = 0
    while sizes.sum() < batch:
        sizes[order[i % len(order)]] += 1
        i += 1
    return sizes.tolist()


def lr_at(progress: float, step: int, cfg) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_unet(config: GeneratorConfig, sample_size: int, num_classes: int) -> MultiExitUViT:
    m = config.model
    return MultiExitUViT(sample_size=sample_size, in_channels=1, patch_size=m.patch_size,
                         hidden_size=m.hidden_size, depth=m.depth, num_heads=m.num_heads,
                         mlp_ratio=m.mlp_ratio, stem_channels=m.stem_channels, num_classes=num_classes,
                         exits=tuple(m.exits), conditioning=m.conditioning)


def train_loop(unet: MultiExitUViT, images: torch.Tensor, labels: torch.Tensor, config: GeneratorConfig,
               on_log=None, show_progress: bool = True) -> tuple[MultiExitUViT, dict[str, Any]]:
    """Train `unet` in place; return its EMA copy and a summary (steps, images/s, final losses)."""
    cfg = config.train
    sched = training_scheduler()
    alphas = sched.alphas_cumprod
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    sizes = exit_split(cfg.batch_size, cfg.exit_weights)
    names = unet.exit_names
    gen = torch.Generator().manual_seed(config.seed)
    null_label = unet.config.num_classes
    budget_s = cfg.minutes * 60
    start = time.perf_counter()
    step, progress, seen = 0, 0.0, 0
    order, cursor = torch.randperm(len(labels), generator=gen), 0
    running: dict[str, float] = {}
    bar = tqdm(total=100, desc="generator", unit="%", disable=not show_progress,
               bar_format="{l_bar}{bar}| {n:.0f}/{total}% [{elapsed}<{remaining}{postfix}]")
    unet.train()
    while progress < 1.0:
        if cursor + cfg.batch_size > len(order):
            order, cursor = torch.randperm(len(labels), generator=gen), 0
        idx = order[cursor:cursor + cfg.batch_size]
        cursor += cfg.batch_size
        x0, y = images[idx], labels[idx].clone()
        y[torch.rand(len(y), generator=gen) < cfg.label_dropout] = null_label
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(y),), generator=gen)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        weight = min_snr_weight(alphas, t, cfg.snr_gamma)
        for g in opt.param_groups:
            g["lr"] = lr_at(progress, step, cfg)
        losses, total, offset = {}, 0.0, 0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            for name, size in zip(names, sizes):
                if size == 0:
                    continue
                sl = slice(offset, offset + size)
                offset += size
                pred = unet(xt[sl], t[sl], y[sl], exit=name).float()
                per_sample = F.mse_loss(pred, target[sl], reduction="none").mean(dim=(1, 2, 3))
                total = total + (weight[sl] * per_sample).sum() / len(y)
                losses[name] = float(per_sample.detach().mean())
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        step += 1
        seen += len(y)
        losses["total"] = float(total.detach())
        for k, v in losses.items():
            running[k] = v if k not in running else 0.95 * running[k] + 0.05 * v
        elapsed = time.perf_counter() - start
        progress = max(step / cfg.max_steps, elapsed / budget_s)
        bar.n = min(100.0, 100 * progress)
        if step % cfg.log_every == 0 or progress >= 1.0:
            bar.set_postfix(loss=f"{running['total']:.4f}", step=step, img_s=f"{seen / elapsed:.0f}")
            bar.refresh()
            if on_log is not None:
                metrics = {f"losses/{k}": v for k, v in running.items()}
                metrics.update({"charts/lr": opt.param_groups[0]["lr"], "charts/images_per_s": seen / elapsed,
                                "charts/epochs": seen / len(labels)})
                on_log(metrics, step)
    bar.close()
    for pe, b in zip(ema.buffers(), unet.buffers()):
        pe.copy_(b)
    wall = time.perf_counter() - start
    return ema, {"steps": step, "images_seen": seen, "epochs": seen / len(labels), "train_wall_s": wall,
                 "images_per_s": seen / wall, "final_losses": dict(running)}


def exit_grids(gen: Generator, out_dir: Path, steps: int, per_class: int = 8, seed: int = 0) -> dict[str, Path]:
    """One PNG per uniform plan (rows = classes): the samples the README and MLflow show."""
    labels = np.repeat(np.arange(gen.num_classes), per_class)
    paths = {}
    for name in gen.unet.exit_names:
        images = generate(gen, labels, plan=name, steps=steps, seed=seed)
        paths[name] = save_png(image_grid(images, rows=gen.num_classes), out_dir / f"samples_{name}.png",
                               scale=2 if images.shape[-1] >= 16 else 4)
    return paths


def train_generator(config: GeneratorConfig, out: str | Path, track: bool = True, show_progress: bool = True,
                    grids_dir: str | Path | None = None, log=print) -> dict[str, Any]:
    """Train classifier + generator, save the folder `out`, log it all to MLflow; return a summary."""
    torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.seed)
    data = load_dataset(config.dataset)
    log(f"data: {data.name}, {len(data.train)} train / {len(data.test)} test images "
        f"of {data.sample_size}x{data.sample_size}")
    summary: dict[str, Any] = {"dataset": data.name}

    def run(mlflow_module) -> dict[str, Any]:
        t0 = time.perf_counter()
        cc = config.classifier
        start_from = load_generator(config.train.init_from) if config.train.init_from else None
        if start_from is not None:
            if start_from.meta.get("dataset") != data.name:
                raise ConfigError(f"train.init_from: {config.train.init_from!r} was trained on "
                                  f"{start_from.meta.get('dataset')!r}, not {data.name!r}")
            classifier = start_from.classifier
            log(f"continuing from {start_from.path} (its weights and quality classifier)")
        else:
            classifier = train_classifier(data.train, data.num_classes, epochs=cc.epochs, batch_size=cc.batch_size,
                                          lr=cc.lr, width=cc.width, seed=config.seed, show_progress=show_progress)
        summary["classifier_accuracy"] = accuracy(classifier, data.test.images, data.test.labels)
        summary["classifier_train_s"] = time.perf_counter() - t0
        log(f"classifier: {summary['classifier_accuracy']:.4f} test accuracy "
            f"({summary['classifier_train_s']:.0f} s)")
        unet = build_unet(config, data.sample_size, data.num_classes)
        if start_from is not None:
            try:
                unet.load_state_dict(start_from.unet.state_dict())
            except RuntimeError as exc:
                raise ConfigError(f"train.init_from: its model does not match the config's model section: "
                                  f"{str(exc).splitlines()[0]}") from None
            summary["init_from"] = str(start_from.path)
            summary["init_from_train_wall_s"] = start_from.meta.get("training", {}).get("train_wall_s")
        summary["parameters"] = sum(p.numel() for p in unet.parameters())

        def on_log(metrics, step):
            if mlflow_module is not None:
                mlflow_module.log_metrics(metrics, step=step)

        ema, stats = train_loop(unet, data.train.images, data.train.labels, config, on_log, show_progress)
        summary.update(stats)
        log(f"generator: {stats['steps']} steps, {stats['epochs']:.2f} epochs in {stats['train_wall_s']:.0f} s "
            f"({stats['images_per_s']:.0f} images/s)")
        meta = {"dataset": data.name, "class_names": list(data.class_names), "plans": config.plans,
                "sampling": {**config.sampling.model_dump(), "bf16": config.profile.bf16},
                "training": {"config": config.model_dump(mode="json"),
                             **{k: v for k, v in summary.items() if k != "final_losses"},
                             "final_losses": stats["final_losses"]}}
        folder = save_generator(out, ema, dict(training_scheduler().config), classifier, meta)
        summary["model_dir"] = str(folder)
        gen = load_generator(folder)
        grids = exit_grids(gen, Path(grids_dir) if grids_dir else folder.parent / f"{folder.name}-samples",
                           steps=config.sampling.steps, per_class=8, seed=config.seed)
        summary["sample_grids"] = {k: str(v) for k, v in grids.items()}
        if mlflow_module is not None:
            mlflow_module.log_metrics({"quality/classifier_accuracy": summary["classifier_accuracy"],
                                       "charts/train_wall_s": stats["train_wall_s"]})
            for name, path in grids.items():
                mlflow_module.log_artifact(str(path), artifact_path="samples")
            mlflow_module.log_artifacts(str(folder), artifact_path="generator")
            summary.update(register_generator(mlflow_module, gen, promote=config.dataset == "fashion-mnist"))
        return summary

    if not track:
        return run(None)
    with tracking.tracked_run(tracking.EXPERIMENT_GENERATOR, config.model_dump(mode="json"), seed=config.seed,
                              run_name=f"generator-{config.dataset}", tags={"dataset": config.dataset}) as active:
        summary["run_id"] = active.info.run_id
        return run(tracking.configure_mlflow())


def register_generator(mlflow, gen: Generator, promote: bool) -> dict[str, Any]:
    """Log the model, register it as `aigc-edge-generator`, point `champion` at it.

    A digits model (tests, --quick) only takes `champion` when there is none yet, so a quick run
    never displaces the Fashion-MNIST champion of a real store.
    """
    import mlflow.pytorch
    from mlflow import MlflowClient

    info = mlflow.pytorch.log_model(gen.unet, name="model", registered_model_name=tracking.GENERATOR_MODEL_NAME,
                                    serialization_format="pickle",
                                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "diffusers"])
    client = MlflowClient()
    version = info.registered_model_version
    has_champion = True
    try:
        client.get_model_version_by_alias(tracking.GENERATOR_MODEL_NAME, tracking.CHAMPION_ALIAS)
    except Exception:  # no alias yet
        has_champion = False
    if promote or not has_champion:
        client.set_registered_model_alias(tracking.GENERATOR_MODEL_NAME, tracking.CHAMPION_ALIAS, version)
    return {"registered_model": tracking.GENERATOR_MODEL_NAME, "model_version": int(version),
            "champion": bool(promote or not has_champion)}
