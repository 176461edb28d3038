"""Class-conditional sampling that follows an exit plan, with any diffusers scheduler.

The model predicts, the scheduler steps (diffusers' split): at denoising step i the plan names the
exit the U-ViT runs. Classifier-free guidance runs the conditional and null-label halves as one
batch, so a guided step costs one forward pass of twice the batch.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from envs.config import ConfigError
from serving.generator.checkpoint import Generator
from serving.generator.model import MultiExitUViT
from serving.generator.plans import ExitPlan


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def validate_request(gen: Generator, labels, plan: str, steps: int) -> None:
    """Reject bad input with a message naming the field and what is allowed."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0 or steps > 1000:
        raise ConfigError(f"steps: must be an integer in 1..1000, got {steps!r}")
    gen.plan(plan)
    for label in np.atleast_1d(np.asarray(labels)):
        if not (0 <= int(label) < gen.num_classes) or int(label) != label:
            raise ConfigError(f"label: must be an integer in 0..{gen.num_classes - 1} "
                              f"({', '.join(f'{i}={n}' for i, n in enumerate(gen.class_names))}), got {label!r}")


@torch.no_grad()
def sample_images(unet: MultiExitUViT, scheduler, labels: torch.Tensor, plan: ExitPlan, steps: int,
                  guidance_scale: float = 1.0, generator: torch.Generator | None = None,
                  bf16: bool = False) -> torch.Tensor:
    """Images in [-1, 1] of shape [B, C, H, W], one per label, following `plan` step by step."""
    unet.eval()
    b = len(labels)
    c, s = unet.config.in_channels, unet.config.sample_size
    scheduler.set_timesteps(steps)
    x = torch.randn((b, c, s, s), generator=generator) * scheduler.init_noise_sigma
    null = torch.full_like(labels, unet.config.num_classes)
    guided = guidance_scale != 1.0
    for i, t in enumerate(scheduler.timesteps):
        exit_name = plan.exit_at(i, steps)
        model_in = scheduler.scale_model_input(x, t)
        with autocast(bf16):
            if guided:
                out = unet(torch.cat([model_in, model_in]), t, torch.cat([labels, null]), exit=exit_name)
                cond, uncond = out.float().chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            else:
                pred = unet(model_in, t, labels, exit=exit_name).float()
        x = scheduler.step(pred, t, x, generator=generator).prev_sample
    return x.clamp(-1, 1)


def generate(gen: Generator, labels, plan: str = "full", steps: int | None = None,
             guidance_scale: float | None = None, seed: int = 0, scheduler: str | None = None,
             bf16: bool | None = None, batch_size: int = 250) -> torch.Tensor:
    """Validated, batched sampling from a loaded generator with its sampling defaults."""
    defaults = gen.meta.get("sampling", {})
    steps = defaults.get("steps", 20) if steps is None else steps
    validate_request(gen, labels, plan, steps)
    guidance_scale = defaults.get("guidance_scale", 1.0) if guidance_scale is None else guidance_scale
    bf16 = defaults.get("bf16", False) if bf16 is None else bf16
    labels = torch.as_tensor(np.atleast_1d(np.asarray(labels)), dtype=torch.long)
    rng = torch.Generator().manual_seed(seed)
    chunks = [sample_images(gen.unet, gen.scheduler(scheduler), labels[i:i + batch_size], gen.plan(plan),
                            steps, guidance_scale, rng, bf16) for i in range(0, len(labels), batch_size)]
    return torch.cat(chunks)


def image_grid(images: torch.Tensor, rows: int) -> np.ndarray:
    """[N, 1, H, W] in [-1, 1] -> one uint8 grid image [rows*H, cols*W] with 1-pixel gaps."""
    n, _, h, w = images.shape
    cols = (n + rows - 1) // rows
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), 255, dtype=np.uint8)
    pixels = ((images[:, 0].float().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = pixels[k]
    return grid


def save_png(array: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write a grey uint8 array as PNG (nearest-neighbour upscaled by `scale`)."""
    import matplotlib.image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"out: the output file must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if scale > 1:
        array = np.kron(array, np.ones((scale, scale), dtype=np.uint8))
    matplotlib.image.imsave(path, array, cmap="gray", vmin=0, vmax=255)
    return path
