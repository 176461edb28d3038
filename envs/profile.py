"""The ExitProfile: what a multi-exit generator costs and how good it is, per exit plan.

Made by `aigc-edge generator profile` (serving), consumed by every scenario with a generator
(envs). This module is the one definition of its JSON schema; it is validated on load.

Per plan: `relative_flops` (vs the plan `full`), `ms_per_step_b1` / `ms_per_step_b16` (measured
time of one denoising step at batch 1 and 16), and on a grid of step counts `accuracy` (the
quality classifier's accuracy on class-conditional samples), `accuracy_ratio` (that divided by
its accuracy on real test images, clipped to [0, 1]: the quality used in rewards) and `fd`
(Frechet distance on the classifier's features; lower is better).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator, model_validator

from envs.config import ConfigError, StrictModel, validate

SCHEMA_VERSION = 1
FULL_PLAN = "full"

# Shipped inputs live with their package; envs reads the file, it never imports serving.
DEFAULT_PROFILE_PATH = Path(__file__).resolve().parent.parent / "serving" / "profiles" / "default.json"


class StepQuality(StrictModel):
    steps: int = Field(ge=1, le=1000, description="number of denoising steps")
    accuracy: float = Field(ge=0.0, le=1.0)
    accuracy_ratio: float = Field(ge=0.0, le=1.0, description="quality used in rewards")
    fd: float = Field(ge=0.0, description="Frechet distance on classifier features")


class PlanProfile(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    relative_flops: float = Field(gt=0.0, le=1.0, description="FLOPs per step relative to 'full'")
    ms_per_step_b1: float = Field(gt=0.0)
    ms_per_step_b16: float = Field(gt=0.0)
    quality: list[StepQuality] = Field(min_length=1)

    @field_validator("quality")
    @classmethod
    def _sorted_unique_steps(cls, value: list[StepQuality]) -> list[StepQuality]:
        steps = [q.steps for q in value]
        if steps != sorted(set(steps)):
            raise ValueError(f"step counts must be strictly increasing, got {steps}")
        return value


class ModelInfo(StrictModel):
    id: str = Field(min_length=1)
    hash: str = Field(min_length=1, description="sha256 of the weights file")


class MachineInfo(StrictModel):
    cpu: str = ""
    threads: int = Field(ge=1)
    torch: str = ""
    dtype: str = "float32"
    measured_at: str = ""


class ExitProfile(StrictModel):
    schema_version: int
    model: ModelInfo
    machine: MachineInfo
    real_accuracy: float = Field(gt=0.0, le=1.0, description="classifier accuracy on real test images")
    real_fd_floor: float = Field(ge=0.0, description="FD between two held-out real sets of the same size")
    plans: list[PlanProfile] = Field(min_length=1)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"schema_version must be {SCHEMA_VERSION}, got {value}")
        return value

    @model_validator(mode="after")
    def _has_full_and_unique_names(self) -> "ExitProfile":
        names = [p.name for p in self.plans]
        if len(set(names)) != len(names):
            raise ValueError(f"plan names must be unique, got {names}")
        if FULL_PLAN not in names:
            raise ValueError(f"a profile must include the plan {FULL_PLAN!r}, got {names}")
        return self

    # ---- lookups used by the simulator -------------------------------------------------------
    @property
    def plan_names(self) -> list[str]:
        return [p.name for p in self.plans]

    def plan(self, name: str) -> PlanProfile:
        for p in self.plans:
            if p.name == name:
                return p
        raise ConfigError(f"plan {name!r} is not in the profile; known plans: {self.plan_names}")

    def subset(self, names: list[str] | None) -> list[PlanProfile]:
        """The plans a scenario uses, in the given order (all of them when `names` is None)."""
        return list(self.plans) if names is None else [self.plan(n) for n in names]

    def digest(self) -> str:
        """A short hash of the whole profile, recorded in policy specs."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def quality_table(plans: list[PlanProfile], max_steps: int) -> np.ndarray:
    """accuracy_ratio[plan, steps] for steps 0..max_steps, linear between grid points, flat outside.

    A vectorised simulator reads quality with one fancy-index into this table.
    """
    steps = np.arange(max_steps + 1, dtype=np.float64)
    table = np.empty((len(plans), max_steps + 1))
    for i, plan in enumerate(plans):
        grid = np.array([q.steps for q in plan.quality], dtype=np.float64)
        ratio = np.array([q.accuracy_ratio for q in plan.quality])
        table[i] = np.interp(steps, grid, ratio)
    return table


def load_profile(path: str | Path | None = None) -> ExitProfile:
    """Load and validate an ExitProfile JSON (the shipped default when `path` is None)."""
    path = Path(path) if path is not None else DEFAULT_PROFILE_PATH
    if not path.is_file():
        if path == DEFAULT_PROFILE_PATH:
            raise ConfigError(
                f"no default ExitProfile at {path}: run `aigc-edge generator profile` to measure one, "
                "or set profile=<path to a profile JSON> in the scenario config")
        raise ConfigError(f"profile file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"profile file {str(path)!r} is not valid JSON: {exc}") from exc
    return validate(ExitProfile, data, source=f"ExitProfile {path}")


def save_profile(profile: ExitProfile, path: str | Path) -> None:
    """Write atomically, so a crash never leaves a half-written profile behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(profile.model_dump(mode="json"), indent=2) + "\n")
    tmp.replace(path)
