"""The HTTP API's request and response models (what /openapi.json publishes) and its error shapes.

POST /v1/generate takes a class (`label` 0..9 or `class_name`), the denoising `steps` or a
`quality_target` (the fewest steps at which some plan reaches that accuracy_ratio; plans below
it are ruled out), a `deadline_s` (default: the topology's SLO), a `seed` (requests are
idempotent: a retry on another node gives the same image) and a `format` (png | json).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
MAX_STEPS = 50


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: int | None = Field(None, ge=0, le=len(CLASS_NAMES) - 1, description="class index 0..9")
    class_name: Literal[CLASS_NAMES] | None = Field(None, description="class name instead of label")  # type: ignore[valid-type]
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="denoising steps (default 10)")
    quality_target: float | None = Field(None, gt=0.0, le=1.0,
                                         description="accuracy_ratio to reach instead of giving steps")
    deadline_s: float | None = Field(None, gt=0.0, le=60.0, description="default: the topology's SLO")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    format: Literal["png", "json"] = "png"

    @model_validator(mode="after")
    def _one_class_and_one_depth(self) -> "GenerateRequest":
        if (self.label is None) == (self.class_name is None):
            raise ValueError("give exactly one of label or class_name")
        if self.steps is not None and self.quality_target is not None:
            raise ValueError("give steps or quality_target, not both")
        return self

    @property
    def class_label(self) -> int:
        return self.label if self.label is not None else CLASS_NAMES.index(self.class_name)


class Decision(BaseModel):
    router: str
    policy: str | None
    policy_version: int
    model_version: str | None = Field(None, description="the MLflow registry version of a learned policy given "
                                                        "as models:/NAME@ALIAS or models:/NAME/VERSION; else null")
    node: str
    plan: str
    steps: int
    action: int
    quality: float = Field(description="the profile's accuracy_ratio of this plan and steps")
    retried: int = Field(description="attempts on other nodes after the first failed")


class Timings(BaseModel):
    decision_ms: float
    node_ms: float
    compute_ms: float
    emulated_compute_ms: float
    link_ms: float
    total_ms: float


class GenerateResponse(BaseModel):
    image_png_base64: str
    label: int
    class_name: str
    decision: Decision
    timings: Timings


class ErrorResponse(BaseModel):
    error: str
    detail: str
    fields: list[str] = []


def field_errors(errors: list[dict]) -> tuple[str, list[str]]:
    """FastAPI's validation errors -> ('body.label: ...; ...', ['label', ...])."""
    parts, names = [], []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        name = ".".join(loc) or "body"
        names.append(name)
        parts.append(f"{name}: {err.get('msg', 'invalid')}")
    return "; ".join(parts), names
