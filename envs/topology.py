"""The serving topology: which edge nodes exist, how fast they are, their links, the SLO, the load.

One YAML file (default `serving/topologies/default.yaml`) describes the deployment the router
serves; this module is its one schema. The `serve-sim` scenario (envs/serve_sim.py) simulates
exactly this file, and the Ray Serve app (serving/app) deploys exactly this file, so the router's
policy is trained on a simulation of the very deployment it routes.

A node type is one Serve deployment of `replicas` generator replicas:
- `speed` is its hardware relative to this machine (<= 1): a request's compute time is the
  profile's ms per step of the plan x steps / speed. The real generator runs, then the replica
  pads to that time (emulated hardware).
- `link` is its network path from the router: one transfer costs rtt + bits / rate + an
  exponential jitter (emulated network: the node sleeps that long; loopback carries the bytes).
- `max_ongoing` requests may be inside one replica at a time (one computes, the rest wait in the
  replica); `max_queued` more may wait at the router's handle. Beyond `capacity` the node
  pushes back (503 Retry-After when every node is full).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from pydantic import Field, field_validator, model_validator

from envs.config import ConfigError, StrictModel, load_config

DEFAULT_TOPOLOGY_PATH = Path(__file__).resolve().parent.parent / "serving" / "topologies" / "default.yaml"


class LinkModel(StrictModel):
    rtt_ms: float = Field(1.0, ge=0.0, le=10_000.0, description="round trip of the path, ms")
    mbit_s: float = Field(1000.0, gt=0.0, le=100_000.0, description="rate of the path, Mbit/s")
    jitter_ms: float = Field(0.0, ge=0.0, le=10_000.0, description="mean of an exponential extra delay per transfer, ms")

    def transfer_s(self, kbit: float) -> float:
        """Mean seconds to carry `kbit` one way (half the round trip + serialisation + mean jitter)."""
        return (self.rtt_ms / 2 + self.jitter_ms) / 1000.0 + kbit / (self.mbit_s * 1000.0)


class NodeType(StrictModel):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9-]*$")
    replicas: int = Field(1, ge=1, le=16)
    speed: float = Field(gt=0.0, le=1.0, description="hardware speed relative to this machine (pads compute)")
    link: LinkModel = LinkModel()
    max_ongoing: int = Field(2, ge=1, le=64, description="requests inside one replica at a time")
    max_queued: int = Field(4, ge=0, le=1000, description="requests waiting at the router for this node")

    @property
    def capacity(self) -> int:
        """Requests in flight at this node before it pushes back."""
        return self.replicas * self.max_ongoing + self.max_queued


class SLO(StrictModel):
    deadline_s: float = Field(2.5, gt=0.0, le=600.0, description="default per-request deadline")


class Workload(StrictModel):
    load: float = Field(0.7, gt=0.0, le=5.0, description="offered load, a fraction of nominal capacity")
    steps: list[int] = Field(default_factory=lambda: [5, 10, 20], min_length=1,
                             description="denoising steps requests ask for (drawn uniformly)")
    request_kbit: float = Field(2.0, ge=0.0, description="request body size on the link")
    result_kbit: float = Field(8.0, ge=0.0, description="result (PNG) size on the link")

    @field_validator("steps")
    @classmethod
    def _steps_in_range(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if not 1 <= s <= 100]
        if bad:
            raise ValueError(f"steps must each be in 1..100, got {bad}")
        return value


class Reward(StrictModel):
    """What a routing decision is worth: quality up, latency and SLO misses down."""
    quality_weight: float = Field(10.0, ge=0.0, description="per unit of accuracy_ratio")
    latency_weight: float = Field(1.0, ge=0.0, description="per second of latency")
    miss_penalty: float = Field(1.0, ge=0.0, description="per request past its deadline or rejected")


class Topology(StrictModel):
    name: str = Field("default", min_length=1)
    nodes: list[NodeType] = Field(min_length=1, max_length=16)
    slo: SLO = SLO()
    workload: Workload = Workload()
    reward: Reward = Reward()
    plans: list[str] | None = Field(None, description="exit plans the router may choose (default: all of the profile)")
    profile: str | None = Field(None, description="ExitProfile JSON (default: the shipped profile)")

    @model_validator(mode="after")
    def _unique_names(self) -> "Topology":
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique, got {names}")
        return self

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def node(self, name: str) -> NodeType:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError(f"node: unknown node {name!r}; allowed: {list(self.node_names)}")

    def service_s(self, node: NodeType, ms_per_step: float, steps: int) -> float:
        """Emulated compute seconds of one request on `node` (the profile's time / speed)."""
        return ms_per_step * steps / 1000.0 / node.speed

    def link_s(self, node: NodeType) -> float:
        """Mean link seconds of one request: the request up plus the result down."""
        w = self.workload
        return node.link.transfer_s(w.request_kbit) + node.link.transfer_s(w.result_kbit)

    def nominal_capacity_per_s(self, full_ms_per_step: float) -> float:
        """Requests per second all nodes finish at saturation with the plan `full` and the mean
        requested steps: the sum of node capacities, what `workload.load` is a fraction of."""
        mean_steps = sum(self.workload.steps) / len(self.workload.steps)
        return sum(n.replicas / self.service_s(n, full_ms_per_step, mean_steps) for n in self.nodes)


def load_topology(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Topology:
    """A validated topology from YAML (the shipped default when `path` is None), with overrides."""
    path = Path(path) if path is not None else DEFAULT_TOPOLOGY_PATH
    if not path.is_file():
        raise ConfigError(f"topology file {str(path)!r} does not exist")
    return load_config(Topology, path, overrides)
