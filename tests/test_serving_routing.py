"""The router's decision, settings, Serve config and load-test bookkeeping, without Ray."""
from __future__ import annotations

import numpy as np
import pytest

from envs.config import ConfigError, load_yaml
from envs.scenarios import load_scenario, make_core
from envs.topology import load_topology
from serving.app.api import GenerateRequest
from serving.app.config import RouterSettings, ServeAppConfig
from serving.app.deploy import deploy_document, shipped_document
from serving.app.loadtest import LoadtestConfig, LoadtestResult, Outcome, arrival_times, request_bodies
from serving.app.routing import DEFAULT_POLICY, RoutingDecider, scenario_config


def decider(router="greedy", policy=None):
    d = RoutingDecider(load_topology(), scenario_config(None))
    d.use(router, policy)
    return d


def test_live_observation_is_the_simulators_function():
    d = decider()
    d.nodes.sent(0, 0.4)
    d.nodes.sent(0, 0.4)
    d.nodes.sent(0, 0.4)
    view = d.nodes.view()
    core = make_core(load_scenario("serve-sim"), 1, seed=0)
    obs = d.tables.observe(np.array([10]), np.array([2.5]), view)
    assert obs.shape == (1, core.layout.dim)
    assert d.tables.layout.field(obs, "inflight_per_replica")[0, 0] == pytest.approx(1.5)
    assert d.tables.layout.field(obs, "wait_s")[0, 0] == pytest.approx(0.6)
    d.nodes.answered(0, 0.4)
    assert d.nodes.view().inflight[0, 0] == 2


def test_heuristic_routers_decide_and_avoid_a_full_node():
    d = decider("least-loaded")
    cap = int(d.tables.capacity[0])
    for _ in range(cap):
        d.nodes.sent(0, 0.01)     # node 0 full, but with the least queued seconds
    dec = d.decide(10, 2.5)
    assert dec.node != 0 and 0 in dec.fallbacks and dec.decision_ms < 50
    assert d.tables.encoding.plans[dec.plan] == "full"


def test_a_dead_replica_counts_as_missing_for_a_while():
    d = decider()
    d.nodes.replica_died(2)
    assert d.nodes.view().replicas[0, 2] == 0
    assert not d.tables.available(d.nodes.view())[0, 2]


def test_fixed_router_and_hot_swap_versions():
    d = decider()
    v1 = d.active.version
    d.use("fixed:slow/exit2", None)
    dec = d.decide(10, 2.5)
    assert (d.tables.encoding.targets[dec.node], d.tables.encoding.plans[dec.plan]) == ("slow", "exit2")
    assert d.active.version == v1 + 1 and dec.policy.router == "fixed:slow/exit2"
    with pytest.raises(ConfigError, match="fixed:<node>/<plan>"):
        d.use("fixed:nowhere/full", None)
    with pytest.raises(ConfigError, match="needs a policy"):
        d.use("learned", None)


def test_learned_router_loads_the_shipped_policy_and_refuses_another_scenario(tmp_path):
    d = decider("learned", DEFAULT_POLICY)
    dec = d.decide(10, 2.5)
    assert 0 <= dec.action < d.tables.encoding.n
    # a topology with other nodes is another action encoding: the artifact is refused
    other = tmp_path / "two.yaml"
    other.write_text("nodes: [{name: a, speed: 0.5}, {name: b, speed: 0.2}]\n")
    d2 = RoutingDecider(load_topology(other), scenario_config(str(other)))
    with pytest.raises(ConfigError, match="action encoding"):
        d2.use("learned", DEFAULT_POLICY)


def test_quality_target_picks_steps_and_rules_out_plans():
    d = decider()
    steps, ok = d.steps_for_quality(0.97)
    assert ok.any() and (d.tables.quality_by_steps[ok, steps] >= 0.97).all()
    dec = d.decide(steps, 2.5, ok)
    assert ok[dec.plan]
    with pytest.raises(ConfigError, match="quality_target"):
        d.steps_for_quality(0.9999)


def test_request_model_names_fields():
    assert GenerateRequest(class_name="bag").class_label == 8
    for bad in ({}, {"label": 1, "class_name": "bag"}, {"label": 1, "steps": 5, "quality_target": 0.9},
                {"label": 10}, {"label": 1, "format": "gif"}, {"label": 1, "colour": 1}):
        with pytest.raises(ValueError):
            GenerateRequest(**bad)


def test_router_settings_and_serve_config():
    with pytest.raises(ValueError, match="must be one of"):
        RouterSettings(router="fastest")
    doc = deploy_document(ServeAppConfig(port=8011, routing=RouterSettings(router="greedy")))
    assert doc["http_options"] == {"host": "127.0.0.1", "port": 8011}
    shipped = shipped_document()
    assert shipped["http_options"]["host"] == "127.0.0.1"
    app, mine = shipped["applications"][0], doc["applications"][0]
    assert app["import_path"] == mine["import_path"] and set(app["args"]) == set(mine["args"])
    RouterSettings.model_validate(app["deployments"][0]["user_config"])
    ServeAppConfig.model_validate(app["args"])


def test_loadtest_is_seeded_open_loop_and_loopback_only():
    a, b = arrival_times(200, 5.0, seed=3), arrival_times(200, 5.0, seed=3)
    np.testing.assert_array_equal(a, b)
    assert 200 / a[-1] == pytest.approx(5.0, rel=0.2)
    ramp = arrival_times(400, 0, seed=1, ramp=(0.2, 2.0), capacity_per_s=5.0)
    assert np.diff(ramp[:100]).mean() > 3 * np.diff(ramp[-100:]).mean()
    bodies = request_bodies(50, [5, 10], seed=0, deadline_s=None)
    assert {b["steps"] for b in bodies} == {5, 10} and len({b["seed"] for b in bodies}) == 50
    with pytest.raises(ValueError, match="loopback"):
        LoadtestConfig(url="http://10.0.0.1:8000")
    LoadtestConfig(url="http://localhost:8000")


def test_loadtest_summary_counts_late_rejected_failed():
    res = LoadtestResult("greedy", 4.0, deadline_s=1.0, duration_s=2.0)
    res.outcomes = [Outcome(0, 0.5, 200, 10, 0.9, policy_version="1", model_version="3"),
                    Outcome(0, 1.5, 200, 10, 0.8, retried=1, policy_version="2", model_version="4"),
                    Outcome(0, 1.0, 504, 10), Outcome(0, 0.01, 503, 10), Outcome(0, 0.2, 0, 10)]
    s = res.summary()
    assert s["policy_versions"] == {"1": 1, "2": 1} and s["model_versions"] == {"3": 1, "4": 1}
    assert (s["completed"], s["late"], s["rejected"], s["failed"], s["errors"], s["retried"]) == (2, 2, 1, 1, 3, 1)
    assert s["slo_miss_rate"] == pytest.approx(4 / 5) and s["mean_quality"] == pytest.approx(0.85)
    assert s["throughput_per_s"] == pytest.approx(1.0) and s["p50_latency_ms"] == pytest.approx(1000.0)
    for key in ("router", "offered_per_s", "requests", "completed", "mean_latency_ms", "p50_latency_ms",
                "p95_latency_ms", "p99_latency_ms", "slo_miss_rate", "mean_quality", "throughput_per_s",
                "errors", "retried"):
        assert key in s


def test_numpy_policy_takes_the_same_actions_as_the_torch_artifact():
    from envs.scenarios import load_scenario
    from policies.catalog import make_policy
    from serving.app.numpy_policy import NumpyPerActionPolicy

    d = decider("learned", DEFAULT_POLICY)
    assert isinstance(d.active.policy, NumpyPerActionPolicy)
    torch_policy = make_policy(DEFAULT_POLICY, load_scenario("serve-sim"), 0)
    core = make_core(load_scenario("serve-sim", ["load=[0.9, 0.9]"]), 64, seed=4)
    agree = total = 0
    for _ in range(30):
        obs = core.observe()
        a, b = d.active.policy.decide(obs), torch_policy.decide(obs)
        agree, total = agree + int((a == b).sum()), total + a.size
        core.step(b)
    assert agree == total
