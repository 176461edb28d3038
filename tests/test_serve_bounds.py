"""The lower bounds on a router's mean latency (envs/serve_bounds.py) hold against the simulator."""
from __future__ import annotations

import pytest

from envs.scenarios import load_scenario
from envs.serve_bounds import best_mean_quality, capacity_bound, zero_wait_s
from envs.serve_sim import RoutingTables
from envs.topology import load_topology
from policies.evaluation import evaluate


@pytest.fixture(scope="module")
def tables() -> RoutingTables:
    return RoutingTables(load_topology())


@pytest.fixture(scope="module")
def steps(tables) -> list[int]:
    return tables.topology.workload.steps


def test_capacity_bound_is_above_zero_wait_and_grows_with_quality_and_rate(tables, steps):
    rate = 0.7 * tables.nominal_capacity_per_s
    qualities = [0.0, 0.95, 0.965, 0.975, best_mean_quality(tables, steps)]
    by_quality = [capacity_bound(tables, rate, steps, q).mean_latency_s for q in qualities]
    assert by_quality[0] >= zero_wait_s(tables, steps) - 1e-9
    assert by_quality == sorted(by_quality) and by_quality[-1] > by_quality[0]
    by_rate = [capacity_bound(tables, f * tables.nominal_capacity_per_s, steps, 0.965).mean_latency_s
               for f in (0.3, 0.7, 1.2)]
    assert by_rate == sorted(by_rate) and by_rate[-1] > by_rate[0]


def test_split_keeps_every_replica_below_full_time(tables, steps):
    bound = capacity_bound(tables, 1.2 * tables.nominal_capacity_per_s, steps, 0.96)
    assert sum(bound.node_share.values()) == pytest.approx(1.0)
    assert all(0.0 <= busy <= 1.0 + 1e-9 for busy in bound.node_busy.values())
    assert sum(share > 1e-6 for share in bound.node_share.values()) >= 2     # one node cannot carry it


def test_simulated_greedy_is_not_below_the_bound_at_its_quality(tables, steps):
    load = 0.7
    config = load_scenario("serve-sim", [f"load=[{load},{load}]"])
    greedy = evaluate(config, "greedy", episodes=8, seed=3)
    quality = min(greedy["mean_quality"], best_mean_quality(tables, steps))
    bound = capacity_bound(tables, load * tables.nominal_capacity_per_s, steps, quality)
    assert greedy["mean_delay_s"] >= bound.mean_latency_s


def test_impossible_requests_name_the_field(tables, steps):
    with pytest.raises(ValueError, match="min_quality"):
        capacity_bound(tables, 1.0, steps, best_mean_quality(tables, steps) + 0.01)
    with pytest.raises(ValueError, match="rate_per_s"):
        capacity_bound(tables, 0.0, steps)
    with pytest.raises(ValueError, match="rate_per_s .* no split"):
        capacity_bound(tables, 100.0 * tables.nominal_capacity_per_s, steps)
    with pytest.raises(ValueError, match="steps"):
        zero_wait_s(tables, [])
