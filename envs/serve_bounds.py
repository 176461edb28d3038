"""Lower bounds on the mean latency any router can reach on a topology.

The issue asks, when a heuristic is already near the best any policy could do, for that bound.
Two bounds, both over the same requests (their `steps`) and the same RoutingTables the simulator
and the live router use:

- zero-wait: every request at its fastest (node, plan), nothing ever queues, any quality.
- capacity (a fluid bound, solved as a linear program): the requests are split over (node, plan)
  so that, at the offered rate, no replica is busy more than all of the time, and the mean
  quality is at least `min_quality`; the latency of each request is its service plus link time.
  Queueing is left out, so every stable policy at that quality and rate has a mean latency at
  least this (a steady-state bound: a finite trace may borrow a little from its tail).

SciPy is imported only here, not by `envs.serve_sim`: replicas import that one and stay small.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.serve_sim import RoutingTables


@dataclass(frozen=True)
class CapacityBound:
    mean_latency_s: float           # the bound
    min_quality: float              # the quality constraint it was solved under
    rate_per_s: float
    node_share: dict[str, float]    # fraction of requests each node type gets at the optimum
    node_busy: dict[str, float]     # fraction of the time each of its replicas computes


def _step_classes(steps) -> tuple[np.ndarray, np.ndarray]:
    steps = np.asarray(steps, dtype=np.int64).ravel()
    if steps.size == 0:
        raise ValueError("steps: give at least one request's steps")
    values, counts = np.unique(steps, return_counts=True)
    return values, counts / counts.sum()


def zero_wait_s(tables: RoutingTables, steps) -> float:
    """Mean over the requests of their fastest (node, plan) service plus link time."""
    values, weights = _step_classes(steps)
    fastest = (tables.service_s(values) + tables.link_s[None, :, None]).reshape(len(values), -1).min(1)
    return float(fastest @ weights)


def best_mean_quality(tables: RoutingTables, steps) -> float:
    """The highest mean quality any router can serve these requests at (each at its best plan)."""
    values, weights = _step_classes(steps)
    return _best_quality(tables, values, weights)


def _best_quality(tables: RoutingTables, values: np.ndarray, weights: np.ndarray) -> float:
    return float(tables.quality_by_steps[:, values].max(0) @ weights)


def capacity_bound(tables: RoutingTables, rate_per_s: float, steps, min_quality: float = 0.0) -> CapacityBound:
    """The fluid bound at `rate_per_s` requests per second whose steps are distributed as `steps`."""
    from scipy.optimize import linprog

    if not rate_per_s > 0:
        raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
    values, weights = _step_classes(steps)
    top = _best_quality(tables, values, weights)
    if min_quality > top + 1e-12:
        raise ValueError(f"min_quality {min_quality:.4f} is above {top:.4f}, the best mean quality any plan "
                         "serves these requests at: use 0 <= min_quality <= that")
    S, N, P = len(values), tables.n_nodes, tables.n_plans
    service = tables.service_s(values)                                    # [S, N, P]
    latency = service + tables.link_s[None, :, None]
    quality = np.broadcast_to(tables.quality_by_steps[:, values].T[:, None, :], (S, N, P))
    # x[s, n, p]: the fraction of all requests that ask for steps s and go to (node n, plan p)
    one_per_class = np.kron(np.eye(S), np.ones(N * P))                    # sum over (n, p) = weight of s
    busy = np.stack([(rate_per_s * service * (np.arange(N) == n)[None, :, None]).ravel() for n in range(N)])
    result = linprog(latency.ravel(),
                     A_ub=np.vstack([busy, -quality.ravel()[None, :]]),
                     b_ub=np.concatenate([tables.replicas, [-min_quality]]),
                     A_eq=one_per_class, b_eq=weights, bounds=(0.0, None), method="highs")
    if not result.success:
        raise ValueError(f"rate_per_s {rate_per_s:.2f}: no split of the requests over the nodes keeps every "
                         f"replica below full time at mean quality >= {min_quality:.4f} ({result.message})")
    x = result.x.reshape(S, N, P)
    names = tables.topology.node_names
    share = x.sum((0, 2))
    busy_frac = rate_per_s * (x * service).sum((0, 2)) / tables.replicas
    return CapacityBound(mean_latency_s=float(result.fun), min_quality=float(min_quality), rate_per_s=float(rate_per_s),
                         node_share={n: float(v) for n, v in zip(names, share)},
                         node_busy={n: float(v) for n, v in zip(names, busy_frac)})
