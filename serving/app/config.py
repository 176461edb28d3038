"""The serving app's settings: one validated model, from YAML and `--set key=value`.

The Router's policy lives apart, in its `user_config` ({"router": ..., "policy": ...}), so a
`serve deploy` that changes only that swaps the policy on the live replicas (`reconfigure`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

from pydantic import Field, field_validator, model_validator

from envs.config import StrictModel, load_config
from policies.catalog import MLFLOW_URI_SCHEMES
from serving.app.routing import FIXED_PREFIX, ROUTERS

APP_NAME = "aigc-edge"
SERVE_CONFIG_PATH = Path(__file__).resolve().parent.parent / "serve_config.yaml"



class RouterSettings(StrictModel):
    """The Router's user_config: what `reconfigure` swaps without a restart."""
    router: str = Field("least-loaded", description=f"one of {', '.join(ROUTERS)} (or {FIXED_PREFIX}<node>/<plan>)")
    policy: str | None = Field(None, description="learned: a checkpoint folder or models:/aigc-edge-policy-serve-sim@champion")
    seed: int = Field(0, description="seed of the random router")
    follow_alias_s: float = Field(
        10.0, ge=0.0, le=3600.0,
        description="learned router with a models:/NAME@ALIAS policy: seconds between looks at the alias in "
                    "the registry; when it names a new version, that version is built aside and swapped in. "
                    "0 = off (the version found at deploy stays), else 0.1 to 3600")
    tracking_uri: str | None = Field(
        None, description="MLflow store an MLflow policy (models:/, runs:/) and its alias are read from; "
                          "default: the store of the process that makes these settings (MLFLOW_TRACKING_URI, "
                          "else $AIGC_EDGE_HOME/mlflow.db), so the Router reads where the endpoint was started")

    @field_validator("router")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ROUTERS and not value.startswith(FIXED_PREFIX):
            raise ValueError(f"must be one of {', '.join(ROUTERS)} or {FIXED_PREFIX}<node>/<plan>, got {value!r}")
        return value

    @field_validator("follow_alias_s")
    @classmethod
    def _period(cls, value: float) -> float:
        if 0.0 < value < 0.1:
            raise ValueError(f"must be 0 (off) or from 0.1 to 3600 s, got {value}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _store(cls, data):
        """An MLflow policy gets the store of the process that writes the settings (the driver that
        deploys), not the one a Router replica's environment would give."""
        if (isinstance(data, dict) and data.get("tracking_uri") is None
                and str(data.get("policy") or "").startswith(MLFLOW_URI_SCHEMES)):
            from policies.tracking import tracking_uri
            data = {**data, "tracking_uri": tracking_uri()}
        return data


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
    """The app config, its topology loaded once here: a bad topology fails in the caller, before Ray
    starts, not in Serve's remote build task (which retries it, then reports DEPLOY_FAILED)."""
    from envs.topology import load_topology

    cfg = load_config(ServeAppConfig, path, overrides, base=base)
    load_topology(cfg.topology, cfg.topology_overrides)
    return cfg
