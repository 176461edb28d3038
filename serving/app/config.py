"""The serving app's settings: one validated model, from YAML and `--set key=value`.

The Router's policy lives apart, in its `user_config` ({"router": ..., "policy": ...}), so a
`serve deploy` that changes only that swaps the policy on the live replicas (`reconfigure`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

from pydantic import Field, field_validator

from envs.config import StrictModel, load_config
from serving.app.routing import FIXED_PREFIX, ROUTERS

APP_NAME = "aigc-edge"
SERVE_CONFIG_PATH = Path(__file__).resolve().parent.parent / "serve_config.yaml"



class RouterSettings(StrictModel):
    """The Router's user_config: what `reconfigure` swaps without a restart."""
    router: str = Field("least-loaded", description=f"one of {', '.join(ROUTERS)} (or {FIXED_PREFIX}<node>/<plan>)")
    policy: str | None = Field(None, description="learned: a checkpoint folder or models:/aigc-edge-policy-serve-sim@champion")
    seed: int = Field(0, description="seed of the random router")

    @field_validator("router")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ROUTERS and not value.startswith(FIXED_PREFIX):
            raise ValueError(f"must be one of {', '.join(ROUTERS)} or {FIXED_PREFIX}<node>/<plan>, got {value!r}")
        return value


class ServeAppConfig(StrictModel):
    topology: str | None = Field(None, description="topology YAML (default: serving/topologies/default.yaml)")
    topology_overrides: list[str] = Field(default_factory=list, description="key=value overrides of the topology")
    routing: RouterSettings = RouterSettings()
    host: str = Field("127.0.0.1", description="HTTP bind address (loopback unless told otherwise)")
    port: int = Field(8000, ge=1, le=65535)
    model_dir: str | None = Field(None, description="generator folder (default: the shipped serving/models/default)")
    node_num_cpus: float = Field(0.25, gt=0.0, le=8.0, description="CPUs reserved per node replica")
    router_num_cpus: float = Field(0.25, gt=0.0, le=8.0, description="CPUs reserved by the Router")
    max_body_bytes: int = Field(16_384, ge=256, le=10_000_000, description="request bodies over this get 413")
    retry_after_s: int = Field(1, ge=1, le=600, description="Retry-After of a 503 when every node is full")
    seed: int = Field(0, description="seed of the emulated link jitter")


def load_app_config(path: str | Path | None = None, overrides: Iterable[str] = (), base: dict | None = None) -> ServeAppConfig:
    return load_config(ServeAppConfig, path, overrides, base=base)
