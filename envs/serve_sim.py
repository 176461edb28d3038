"""The `serve-sim` scenario: a simulation of the serving topology, to train the router that serves it.

Built from the topology YAML (envs/topology.py) and the measured ExitProfile. One step is one
HTTP request routed: the action is (node, exit plan) in the shared encoding (envs/actions.py),
node-major. The denoising **steps are part of the request** (the user asks for them; the
router chooses where and how deep, not how many steps).

What is simulated, per vectorised copy (NumPy only):
- Poisson arrivals at `load` x the topology's nominal capacity (a range: drawn per episode);
  each request asks for steps drawn uniformly from `workload.steps`.
- Each node type is `replicas` FIFO servers. A request travels up its link (half the round trip
  + its bits / rate + an exponential jitter), waits for the replica that frees first, computes for
  the profile's ms per step of its plan x steps / speed (x a log-normal noise: the real replicas
  share two cores), then the result travels down. Latency = result back - arrival.
- Backpressure: a node holds at most `capacity` requests in flight. A request sent to a full node
  goes to the node with the most free room, as the live router retries; if every node is full it
  is rejected (quality 0, latency = its deadline, missed).
- Reward = quality_weight x accuracy_ratio(plan, steps) - latency_weight x latency
  - miss_penalty x [latency > deadline].

The observation is built by `RoutingTables.observe` from a `NodeView`, the state a router can
know: per node the requests it has in flight and their expected service seconds (fresh), the
healthy replicas (slow). The Ray Serve router calls the same function with its live counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from envs.actions import ActionEncoding
from envs.config import FloatRange, StrictModel
from envs.core import NetworkState, StepResult, VectorCore
from envs.observation import ObservationLayout, ObsField
from envs.profile import ExitProfile, load_profile, quality_table
from envs.topology import Topology, load_topology


class ServeSimConfig(StrictModel):
    scenario: Literal["serve-sim"] = "serve-sim"
    topology: str | None = Field(None, description="topology YAML path (default: serving/topologies/default.yaml)")
    topology_overrides: list[str] = Field(default_factory=list, description="key=value overrides of the topology")
    requests: int = Field(200, ge=1, le=1_000_000, description="requests per episode")
    load: FloatRange | None = Field(None, description="offered load range drawn per episode (default: the topology's)")
    compute_noise: float = Field(0.1, ge=0.0, le=2.0, description="sigma of a log-normal factor on compute time")
    profile: str | None = Field(None, description="ExitProfile JSON (default: the topology's, else the shipped one)")

    @model_validator(mode="after")
    def _positive_load(self) -> "ServeSimConfig":
        if self.load is not None and self.load[0] <= 0:
            raise ValueError(f"load must be > 0, got {list(self.load)}")
        return self

    def load_topology(self) -> Topology:
        extra = [f"profile={self.profile}"] if self.profile else []
        return load_topology(self.topology, [*self.topology_overrides, *extra])


@dataclass
class NodeView:
    """What a router knows of the nodes for B decisions, [B, N] arrays in topology order."""
    inflight: np.ndarray    # requests sent and not yet answered (fresh: the router's own count)
    backlog_s: np.ndarray   # expected service seconds of those requests
    replicas: np.ndarray    # healthy replicas (slow: from node stats)


def serve_sim_layout(n_actions: int) -> ObservationLayout:
    """The one observation layout of the router: the request, then one column per action."""
    per = dict(size=n_actions, per_action=True)
    fields = (
        ObsField("steps", 1, 20.0, "denoising steps the request asks for"),
        ObsField("deadline_s", 1, 2.5, "the request's deadline"),
        ObsField("quality", scale=1.0, doc="accuracy_ratio of the action's plan at the steps", **per),
        ObsField("service_s", scale=1.0, doc="emulated compute seconds of the action (profile / speed)", **per),
        ObsField("link_s", scale=0.5, doc="mean link seconds of the action's node (up + down)", **per),
        ObsField("wait_s", scale=1.0, doc="estimated queueing seconds at the action's node", **per),
        ObsField("inflight_per_replica", scale=2.0, doc="requests in flight per healthy replica", **per),
        ObsField("free_slots", scale=8.0, doc="requests the node still accepts before backpressure", **per),
        ObsField("estimate_s", scale=2.0, doc="wait + service + link: estimated latency of the action", **per),
    )
    return ObservationLayout("serve-sim", fields)


class RoutingTables:
    """The constants of a topology + profile per (node, plan), and the observation built from them.

    Shared by the simulator and the live router: the one place where a request's service time,
    link time, quality and estimated latency are computed."""

    def __init__(self, topology: Topology, profile: ExitProfile | None = None):
        self.topology = topology
        self.profile = profile or load_profile(topology.profile)
        plans = self.profile.subset(topology.plans)
        self.encoding = ActionEncoding(topology.node_names, tuple(p.name for p in plans))
        self.layout = serve_sim_layout(self.encoding.n)
        self.n_nodes, self.n_plans = len(topology.nodes), len(plans)
        self.ms_per_step = np.array([p.ms_per_step_b1 for p in plans])
        self.speed = np.array([n.speed for n in topology.nodes])
        self.replicas = np.array([n.replicas for n in topology.nodes], dtype=np.float64)
        self.capacity = np.array([n.capacity for n in topology.nodes], dtype=np.float64)
        self.link_s = np.array([topology.link_s(n) for n in topology.nodes])
        w = topology.workload
        self.up_s = np.array([n.link.transfer_s(w.request_kbit) for n in topology.nodes])
        self.down_s = np.array([n.link.transfer_s(w.result_kbit) for n in topology.nodes])
        self.jitter_s = np.array([n.link.jitter_ms / 1000.0 for n in topology.nodes])
        self.max_steps = 100
        self.quality_by_steps = quality_table(plans, self.max_steps)       # [P, steps + 1]
        full = self.profile.plan("full").ms_per_step_b1
        self.nominal_capacity_per_s = topology.nominal_capacity_per_s(full)
        self.deadline_s = topology.slo.deadline_s

    # ---- per request -----------------------------------------------------------------------------
    def service_s(self, steps: np.ndarray) -> np.ndarray:
        """[B, N, P] emulated compute seconds of every (node, plan) for requests of `steps`."""
        steps = np.asarray(steps, dtype=np.float64).reshape(-1, 1, 1)
        return steps * self.ms_per_step[None, None, :] / 1000.0 / self.speed[None, :, None]

    def quality(self, plan: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self.quality_by_steps[plan, np.clip(np.asarray(steps, dtype=np.int64), 0, self.max_steps)]

    def wait_s(self, view: NodeView) -> np.ndarray:
        """[B, N] estimated queueing: none while a replica is free, else the backlog per replica."""
        replicas = np.maximum(view.replicas, 1.0)
        return np.where(view.inflight >= view.replicas, view.backlog_s / replicas, 0.0)

    def estimate_s(self, steps: np.ndarray, view: NodeView) -> np.ndarray:
        """[B, A] estimated latency of every action."""
        est = self.wait_s(view)[:, :, None] + self.service_s(steps) + self.link_s[None, :, None]
        return est.reshape(len(est), -1)

    def observe(self, steps: np.ndarray, deadline_s: np.ndarray, view: NodeView) -> np.ndarray:
        """[B, layout.dim] float32: the observation of B requests given what the router knows."""
        steps = np.asarray(steps, dtype=np.float64)
        B, P = steps.shape[0], self.n_plans
        per_node = lambda x: np.repeat(x, P, axis=1)          # [B, N] -> [B, A], node-major
        wait = self.wait_s(view)
        service = self.service_s(steps).reshape(B, -1)
        link = np.broadcast_to(np.repeat(self.link_s, P), (B, self.encoding.n))
        quality = self.quality_by_steps[:, np.clip(steps.astype(np.int64), 0, self.max_steps)].T   # [B, P]
        return self.layout.build(
            B, steps=steps, deadline_s=np.asarray(deadline_s, dtype=np.float64),
            quality=np.tile(quality, (1, self.n_nodes)), service_s=service, link_s=link,
            wait_s=per_node(wait),
            inflight_per_replica=per_node(view.inflight / np.maximum(view.replicas, 1.0)),
            free_slots=per_node(np.maximum(self.capacity[None, :] - view.inflight, 0.0) * (view.replicas > 0)),
            estimate_s=per_node(wait) + service + link)

    def available(self, view: NodeView) -> np.ndarray:
        """[B, N] nodes that accept one more request now."""
        return (view.inflight < self.capacity[None, :]) & (view.replicas > 0)

    def estimated_rewards(self, steps: np.ndarray, deadline_s: np.ndarray, view: NodeView) -> np.ndarray:
        """[B, A] reward of every action by the router's estimate (what live greedy maximises)."""
        est = self.estimate_s(steps, view)
        return self.reward(est, np.tile(self._plan_quality(steps), (1, self.n_nodes)),
                           np.asarray(deadline_s)[:, None], np.repeat(self.available(view), self.n_plans, axis=1))

    def _plan_quality(self, steps: np.ndarray) -> np.ndarray:
        return self.quality_by_steps[:, np.clip(np.asarray(steps, dtype=np.int64), 0, self.max_steps)].T

    def reward(self, latency_s, quality, deadline_s, accepted) -> np.ndarray:
        """The one reward of a routed request; a rejected one scores quality 0 at its deadline, missed."""
        r = self.topology.reward
        latency_s = np.where(accepted, latency_s, deadline_s)
        quality = np.where(accepted, quality, 0.0)
        missed = ~accepted | (latency_s > deadline_s)
        return r.quality_weight * quality - r.latency_weight * latency_s - r.miss_penalty * missed

    def network_state(self, steps: np.ndarray, deadline_s: np.ndarray, view: NodeView,
                      reward_fn=None) -> NetworkState:
        """The heuristics' view: queued seconds per node (least-loaded), availability, rewards (greedy)."""
        B = len(np.atleast_1d(steps))
        reward_fn = reward_fn or (lambda: self.estimated_rewards(steps, deadline_s, view))
        return NetworkState(self.encoding, view.backlog_s / np.maximum(view.replicas, 1.0),
                            np.zeros(B, dtype=np.int64), self.available(view), reward_fn)


class ServeSimCore(VectorCore):
    scenario = "serve-sim"
    has_quality = True
    has_deadlines = True

    def __init__(self, config: ServeSimConfig, num_envs: int = 1, seed: int | None = None,
                 profile: ExitProfile | None = None, topology: Topology | None = None):
        super().__init__(num_envs, seed)
        self.config = config
        self.topology = topology or config.load_topology()
        self.tables = RoutingTables(self.topology, profile)
        self.profile = self.tables.profile
        self.encoding, self.layout = self.tables.encoding, self.tables.layout
        t = self.tables
        B, N = num_envs, t.n_nodes
        R, C = int(t.replicas.max()), int(t.capacity.max())
        self.steps_choices = np.array(self.topology.workload.steps, dtype=np.int64)
        self.load_range = config.load or (self.topology.workload.load, self.topology.workload.load)
        self.replica_exists = np.arange(R)[None, :] < t.replicas[:, None]           # [N, R]
        self.slot_exists = np.arange(C)[None, :] < t.capacity[:, None]              # [N, C]
        self.now = np.zeros(B)
        self.rate = np.zeros(B)
        self.count = np.zeros(B, dtype=np.int64)
        self.steps = np.zeros(B, dtype=np.int64)
        self.free_at = np.zeros((B, N, R))        # when each replica finishes its queue
        self.done_at = np.zeros((B, N, C))        # when each in-flight request is answered
        self.expected_s = np.zeros((B, N, C))     # its expected service seconds (the router's backlog)
        self.reset()

    # ---- episodes ------------------------------------------------------------------------------------
    def reset(self, mask: np.ndarray | None = None) -> None:
        rows = self.rows if mask is None else self.rows[mask]
        if rows.size == 0:
            return
        k = rows.size
        lo, hi = self.load_range
        self.rate[rows] = self.rng.uniform(lo, hi, size=k) * self.tables.nominal_capacity_per_s
        self.now[rows] = 0.0
        self.count[rows] = 0
        self.free_at[rows] = np.where(self.replica_exists, 0.0, np.inf)
        self.done_at[rows] = np.where(self.slot_exists, -np.inf, np.inf)   # missing slots never free
        self.expected_s[rows] = 0.0
        self._next_request(rows, first=True)

    def _next_request(self, rows: np.ndarray, first: bool = False) -> None:
        gap = self.rng.exponential(1.0, size=rows.size) / self.rate[rows]
        self.now[rows] = (0.0 if first else self.now[rows]) + gap
        self.steps[rows] = self.rng.choice(self.steps_choices, size=rows.size)

    # ---- what the router knows -----------------------------------------------------------------
    def node_view(self, rows: np.ndarray | None = None) -> NodeView:
        rows = self.rows if rows is None else rows
        live = (self.done_at[rows] > self.now[rows, None, None]) & self.slot_exists
        return NodeView(inflight=live.sum(-1).astype(np.float64),
                        backlog_s=(self.expected_s[rows] * live).sum(-1),
                        replicas=np.broadcast_to(self.tables.replicas, (rows.size, self.tables.n_nodes)).copy())

    def observe(self) -> np.ndarray:
        deadline = np.full(self.num_envs, self.tables.deadline_s)
        return self.tables.observe(self.steps, deadline, self.node_view())

    def network_state(self) -> NetworkState:
        view = self.node_view()
        deadline = np.full(self.num_envs, self.tables.deadline_s)
        return self.tables.network_state(self.steps, deadline, view, reward_fn=self._exact_rewards)

    def _start_s(self, rows: np.ndarray) -> np.ndarray:
        """[k, N] when a request arriving now would start computing at each node (mean link)."""
        arrive = self.now[rows, None] + self.tables.up_s[None, :]
        return np.maximum(arrive, self.free_at[rows].min(-1))

    def _exact_rewards(self) -> np.ndarray:
        """Full knowledge (greedy): the reward of every action from the replicas' true queues."""
        t, rows = self.tables, self.rows
        start = self._start_s(rows)
        latency = (start - self.now[:, None])[:, :, None] + t.service_s(self.steps) + t.down_s[None, :, None]
        quality = np.tile(t._plan_quality(self.steps), (1, t.n_nodes))
        accepted = np.repeat(t.available(self.node_view()), t.n_plans, axis=1)
        return t.reward(latency.reshape(self.num_envs, -1), quality, t.deadline_s, accepted)

    # ---- one routed request ----------------------------------------------------------------------
    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        rows = self.rows if active is None else self.rows[active]
        t = self.tables
        node, plan = self.encoding.decode(np.asarray(actions, dtype=np.int64)[rows])
        view = self.node_view(rows)
        free = np.maximum(t.capacity[None, :] - view.inflight, 0.0)
        k = np.arange(rows.size)
        # A full node pushes back: the router retries the node with the most free room.
        full = free[k, node] <= 0
        node = np.where(full, free.argmax(1), node)
        accepted = free[k, node] > 0
        steps = self.steps[rows]
        expected = t.service_s(steps)[k, node, plan]
        noise = np.exp(self.rng.normal(0.0, self.config.compute_noise, size=rows.size)) if self.config.compute_noise else 1.0
        jitter = self.rng.exponential(1.0, size=(2, rows.size)) * t.jitter_s[node]
        up = t.up_s[node] - t.jitter_s[node] + jitter[0]
        down = t.down_s[node] - t.jitter_s[node] + jitter[1]
        now = self.now[rows]
        free_at = self.free_at[rows, node]                        # [k, R]
        replica = free_at.argmin(1)
        start = np.maximum(now + up, free_at[k, replica])
        finish = start + expected * noise
        answered = finish + down
        ok = rows[accepted]
        self.free_at[ok, node[accepted], replica[accepted]] = finish[accepted]
        slot = self.done_at[rows, node].argmin(1)                 # an answered (or empty) slot
        self.done_at[ok, node[accepted], slot[accepted]] = answered[accepted]
        self.expected_s[ok, node[accepted], slot[accepted]] = expected[accepted]
        latency = np.where(accepted, answered - now, t.deadline_s)
        quality = np.where(accepted, t.quality(plan, steps), 0.0)
        missed = ~accepted | (latency > t.deadline_s)
        reward = t.reward(latency, quality, t.deadline_s, accepted)
        self.count[rows] += 1
        done = self.count[rows] >= self.config.requests
        self._next_request(rows)
        return self._result(rows, reward, latency, done, quality, missed)

    def mean_episode_decisions(self) -> float:
        return float(self.config.requests)
