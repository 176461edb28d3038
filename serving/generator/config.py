"""The generator's training configuration: one pydantic model, defaults in `serving/generator.yaml`.

Load with `load_generator_config(path, overrides)`; `--set train.lr=5e-4` style overrides apply.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from envs.config import StrictModel, load_config

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "generator.yaml"
PLAN_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


class ModelConfig(StrictModel):
    """Constructor arguments of `MultiExitUViT` (sample size and class count come from the data)."""
    patch_size: int = Field(4, ge=1, description="side of a square patch, in pixels")
    hidden_size: int = Field(128, ge=8, description="token width")
    depth: int = Field(4, ge=2, description="in-blocks (= out-blocks); plus one mid-block")
    num_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(3.0, gt=0)
    stem_channels: int = Field(16, ge=1, description="channels of the conv stem and refiner")
    exits: list[int] = Field(default_factory=lambda: [1, 2, 3],
                             description="U levels that may exit early, shallowest first")
    conditioning: Literal["adaln", "add"] = Field(
        "adaln", description="how time + label reach every block: adaLN-Zero modulation, or added to tokens")

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if not self.exits or self.exits != sorted(set(self.exits)) or not 1 <= self.exits[0] \
                or self.exits[-1] > self.depth:
            raise ValueError(f"exits must be increasing levels in 1..depth={self.depth}, got {self.exits}")
        return self


class TrainConfig(StrictModel):
    """The optimisation: AdamW, warm-up then cosine decay, EMA weights, v-prediction, min-SNR weights."""
    minutes: float = Field(27.0, gt=0, description="wall-clock budget of the training loop")
    max_steps: int = Field(100_000, ge=1, description="optimiser steps (the loop stops at whichever comes first)")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(200, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of the weights; the EMA is what is saved")
    snr_gamma: float = Field(5.0, gt=0, description="min-SNR weighting: x0-space weight min(SNR+1, gamma)")
    label_dropout: float = Field(0.1, ge=0, lt=1, description="share of null labels (classifier-free guidance)")
    exit_weights: list[float] = Field(default_factory=lambda: [0.2, 0.2, 0.2, 0.4],
                                      description="share of each batch trained at each exit (exits..., full)")
    bf16: bool = Field(True, description="bf16 autocast on CPU (about 2x faster here)")
    threads: int = Field(1, ge=1, description="torch threads (1 is fastest beside other busy processes)")
    log_every: int = Field(50, ge=1)
    init_from: str | None = Field(None, description="generator folder to continue from (its weights and its "
                                                    "quality classifier); None = from scratch")


class ClassifierConfig(StrictModel):
    """The quality classifier trained on the same data (its penultimate features give the FD)."""
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)
    width: int = Field(32, ge=4, description="channels of the first conv layer")


class SamplingConfig(StrictModel):
    scheduler: Literal["ddim", "ddpm", "dpm", "euler"] = "ddim"
    steps: int = Field(20, ge=1, le=1000, description="default denoising steps")
    guidance_scale: float = Field(1.0, ge=1.0, description="classifier-free guidance; 1 = none (one pass per step)")


class ProfileConfig(StrictModel):
    steps_grid: list[int] = Field(default_factory=lambda: [1, 2, 5, 10, 20, 30])
    num_samples: int = Field(1000, ge=20, description="samples per (plan, steps), and real images per FD set")
    batch_size: int = Field(250, ge=1)
    bf16: bool = Field(True, description="measure and sample under bf16 autocast")

    @field_validator("steps_grid")
    @classmethod
    def _grid(cls, value: list[int]) -> list[int]:
        if not value or value != sorted(set(value)) or value[0] < 1:
            raise ValueError(f"steps_grid must be increasing positive step counts, got {value}")
        return value


class GeneratorConfig(StrictModel):
    dataset: Literal["fashion-mnist", "digits"] = "fashion-mnist"
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    plans: dict[str, list[str]] = Field(
        default_factory=lambda: {"deep-first": ["full", "exit1"], "shallow-first": ["exit1", "full"]},
        description="mixed exit plans: exits spread evenly over the denoising steps, first to last")

    @model_validator(mode="after")
    def _check(self) -> "GeneratorConfig":
        n_exits = len(self.model.exits) + 1
        if len(self.train.exit_weights) != n_exits or sum(self.train.exit_weights) <= 0 \
                or min(self.train.exit_weights) < 0:
            raise ValueError(f"train.exit_weights needs {n_exits} non-negative weights (one per exit, "
                             f"then full), got {self.train.exit_weights}")
        exits = [f"exit{i + 1}" for i in range(len(self.model.exits))] + ["full"]
        import re
        for name, schedule in self.plans.items():
            if not re.match(PLAN_NAME_PATTERN, name):
                raise ValueError(f"plans: name {name!r} must match {PLAN_NAME_PATTERN}")
            if name in exits:
                raise ValueError(f"plans: {name!r} is a uniform plan already; choose another name")
            bad = [e for e in schedule if e not in exits]
            if not schedule or bad:
                raise ValueError(f"plans.{name}: exits must be a non-empty list of {exits}, got {schedule}")
        return self


def load_generator_config(path: str | Path | None = None, overrides: list[str] = ()) -> GeneratorConfig:
    """The default YAML (or `path`), then `key=value` overrides, validated."""
    return load_config(GeneratorConfig, path or DEFAULT_CONFIG_PATH, overrides)


# `--quick`: the digits data set and a tiny model, trained in well under a minute.
QUICK_OVERRIDES = [
    "dataset=digits", "model.patch_size=2", "model.hidden_size=64", "model.depth=4", "model.num_heads=4",
    "model.stem_channels=8", "train.minutes=0.5", "train.max_steps=400", "train.batch_size=64",
    "train.warmup_steps=20", "train.ema_decay=0.99", "train.log_every=20", "classifier.epochs=10",
    "profile.steps_grid=[5,10,20]", "profile.num_samples=100", "profile.batch_size=100",
]
