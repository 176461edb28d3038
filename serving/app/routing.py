"""The routing decision, apart from Ray Serve: live node state -> observation -> policy -> (node, plan).

The Router deployment (serving/app/router.py) owns one `RoutingDecider`. It builds the
observation with `envs.serve_sim.RoutingTables.observe` (the function the simulator trains on)
from `LiveNodes`: its own in-flight counts and expected backlog per node (fresh: updated at send
and answer) and the healthy replicas per node (slow: the configured count less replicas seen
dying in the last `recovery_s`, the time Serve takes to bring one back).

Routers: `learned` (a policy artifact: checkpoint folder or `models:/...`), and the heuristics of
policies/heuristics.py fed a `NetworkState` built from the same live state.

A learned policy given as `models:/NAME@ALIAS` is pinned to the version the alias names when it
is loaded; an `AliasFollower` looks at the alias again every few seconds and, when it names
another version, has `RoutingDecider.use` build that version aside and swap it in.
"""
from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.config import ConfigError
from envs.serve_sim import NodeView, RoutingTables, ServeSimConfig
from envs.topology import Topology
from policies.catalog import MLFLOW_URI_SCHEMES

# Serve writes this logger to the replica's log file (serving/app/router.py logs there too).
log = logging.getLogger("ray.serve")

ROUTERS = ("learned", "greedy", "least-loaded", "round-robin", "random")
# The learned router's policy trained on serve-sim of the default topology, shipped with the repo
# (benchmarks/serving/README: how it was trained); `models:/aigc-edge-policy-serve-sim@champion`
# is the registry's copy after `aigc-edge train --scenario serve-sim`.
DEFAULT_POLICY = str(Path(__file__).resolve().parent.parent / "models" / "router-serve-sim")
# `fixed:<node>/<plan>` always takes one action: the pass-through router `bench router` compares against.
FIXED_PREFIX = "fixed:"


class FixedAction:
    """A Policy that always takes one action (no observation read): Serve's hop without a decision."""

    def __init__(self, tables: RoutingTables, spec: str):
        node, _, plan = spec[len(FIXED_PREFIX):].partition("/")
        enc = tables.encoding
        if node not in enc.targets or plan not in enc.plans:
            raise ConfigError(f"router: {spec!r} must be fixed:<node>/<plan> with node in {list(enc.targets)} "
                              f"and plan in {list(enc.plans)}")
        self.name, self.action = spec, int(enc.encode(enc.targets.index(node), enc.plans.index(plan)))

    def decide(self, obs: np.ndarray, state=None) -> np.ndarray:
        return np.full(len(obs), self.action, dtype=np.int64)


class LiveNodes:
    """What the router knows of its nodes right now. Thread-safe: requests run concurrently."""

    def __init__(self, tables: RoutingTables, recovery_s: float = 5.0):
        self.tables, self.recovery_s = tables, recovery_s
        n = tables.n_nodes
        self.inflight = np.zeros(n)
        self.backlog_s = np.zeros(n)
        self.deaths: list[list[float]] = [[] for _ in range(n)]
        self.lock = threading.Lock()

    def view(self) -> NodeView:
        now = time.monotonic()
        with self.lock:
            dead = np.array([sum(1 for t in d if now - t < self.recovery_s) for d in self.deaths], dtype=np.float64)
            return NodeView(inflight=self.inflight[None, :].copy(), backlog_s=self.backlog_s[None, :].copy(),
                            replicas=np.maximum(self.tables.replicas - dead, 0.0)[None, :])

    def sent(self, node: int, expected_s: float) -> None:
        with self.lock:
            self.inflight[node] += 1
            self.backlog_s[node] += expected_s

    def answered(self, node: int, expected_s: float) -> None:
        with self.lock:
            self.inflight[node] = max(self.inflight[node] - 1, 0.0)
            self.backlog_s[node] = max(self.backlog_s[node] - expected_s, 0.0)

    def replica_died(self, node: int) -> None:
        with self.lock:
            self.deaths[node] = [t for t in self.deaths[node] if time.monotonic() - t < self.recovery_s]
            self.deaths[node].append(time.monotonic())


@dataclass
class Decision:
    node: int
    plan: int
    action: int
    steps: int
    expected_s: float          # emulated compute seconds of the chosen action
    decision_ms: float         # observation + policy
    fallbacks: list[int]       # other nodes, best estimate first, for retries
    policy: "ActivePolicy"     # the policy that decided (its version shows in responses)


def scenario_config(topology_path: str | None, topology_overrides: list[str] | tuple = ()) -> ServeSimConfig:
    """The serve-sim scenario of this topology: what a learned router's policy must have been trained on."""
    return ServeSimConfig(topology=topology_path, topology_overrides=list(topology_overrides))


def make_router_policy(router: str, tables: RoutingTables, policy: str | None, config: ServeSimConfig,
                       seed: int | None = 0):
    """The Policy behind a router name; `learned` loads `policy` (local path or registry URI only)."""
    if router.startswith(FIXED_PREFIX):
        return FixedAction(tables, router)
    if router not in ROUTERS:
        raise ConfigError(f"router: unknown router {router!r}; allowed: {', '.join(ROUTERS)}")
    if router != "learned":
        from policies.heuristics import make_heuristic
        return make_heuristic(router, tables.encoding, seed)
    if not policy:
        raise ConfigError("policy: the learned router needs a policy (a checkpoint folder or "
                          "models:/aigc-edge-policy-serve-sim@champion)")
    location = resolve_policy_path(policy)
    if not location.startswith(MLFLOW_URI_SCHEMES):
        from serving.app.numpy_policy import load_numpy_policy
        for folder in (Path(location), Path(location) / "policy"):
            fast = load_numpy_policy(folder, tables.layout.to_json(), tables.encoding.to_json())
            if fast is not None:
                return fast        # no PyTorch in the Router (about 200 MB less resident memory)
    from policies.catalog import make_policy
    return make_policy(location, config, seed, field="policy")


PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


def resolve_policy_path(policy: str) -> str:
    """A relative folder is the caller's, else the project's (the shipped Serve config names
    `serving/models/router-serve-sim`, and a Router replica's working folder is Ray's, not ours)."""
    if policy.startswith(MLFLOW_URI_SCHEMES) or Path(policy).is_absolute():
        return policy
    if Path(policy).exists():
        return str(Path(policy).resolve())
    return str(PROJECT_ROOT / policy)


ALIAS_URI = re.compile(r"models:/([^/@#]+)@([^/@#]+)")      # models:/NAME@ALIAS
PINNED_VERSION = re.compile(r"models:/([^/@#]+)/(\d+)")     # models:/NAME/VERSION


@dataclass(frozen=True)
class RegistryAlias:
    """`models:/NAME@ALIAS`: a registered model's alias, which the registry can move to another version."""
    name: str
    alias: str

    @classmethod
    def parse(cls, policy: str | None) -> "RegistryAlias | None":
        match = ALIAS_URI.fullmatch((policy or "").split("#", 1)[0])
        return cls(*match.groups()) if match else None

    def version(self, tracking_uri: str | None) -> str:
        """The version the alias names now."""
        from mlflow import MlflowClient

        return str(MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(self.name, self.alias).version)


def load_mlflow_policy(uri: str, tables: RoutingTables, config: ServeSimConfig, seed: int | None,
                       tracking_uri: str | None) -> tuple[object, str | None]:
    """A learned policy given by an MLflow URI, read from `tracking_uri` (default: this process's
    store) -> (policy, registry version or None). `models:/NAME@ALIAS` is pinned to the version the
    alias names now (it may move while the artifact downloads); the artifact is built as a local
    folder is (its NumPy form when it has one)."""
    import mlflow

    from policies.tracking import tracking_uri as default_tracking_uri

    tracking_uri = tracking_uri or default_tracking_uri()
    location, sep, suffix = uri.partition("#")
    ref, pinned, version = RegistryAlias.parse(location), PINNED_VERSION.fullmatch(location), None
    if ref is not None or pinned is not None:
        name, version = (ref.name, ref.version(tracking_uri)) if ref is not None else pinned.groups()
        # where that version's files are, asked of this store: MLflow's own models:/ download
        # asks the process-wide registry instead, whatever tracking_uri it is given
        location = mlflow.MlflowClient(tracking_uri=tracking_uri).get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix="aigc-edge-policy-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=tracking_uri)
        return make_router_policy("learned", tables, local + sep + suffix, config, seed), version


@dataclass(frozen=True)
class ActivePolicy:
    """The policy a router uses now; swapped as one reference (hot swap)."""
    router: str
    spec: str | None
    version: int                       # this router's swap counter: 1, 2, ...
    policy: object
    model_version: str | None = None   # the MLflow registry version of a models:/ policy


class RoutingDecider:
    """A router's live state and its swappable policy; `decide` is what `bench router` times."""

    def __init__(self, topology: Topology, config: ServeSimConfig):
        self.tables = RoutingTables(topology)
        self.config = config
        self.nodes = LiveNodes(self.tables)
        self.active: ActivePolicy | None = None
        self.lock = threading.Lock()     # heuristics with state (round-robin, random) are not thread-safe
        self.swap_lock = threading.Lock()

    def use(self, router: str, policy: str | None, seed: int | None = 0, tracking_uri: str | None = None,
            replaces: ActivePolicy | None = None) -> ActivePolicy | None:
        """Build the new policy aside, then swap one reference: requests in flight keep the old one.

        An MLflow policy is read from `tracking_uri`. With `replaces`, the swap happens only if that
        is still the active policy (else None): an alias follower never undoes a newer reconfigure."""
        if router == "learned" and policy and policy.startswith(MLFLOW_URI_SCHEMES):
            built, model_version = load_mlflow_policy(policy, self.tables, self.config, seed, tracking_uri)
        else:
            built, model_version = make_router_policy(router, self.tables, policy, self.config, seed), None
        with self.swap_lock:
            if replaces is not None and self.active is not replaces:
                return None
            version = 1 if self.active is None else self.active.version + 1
            self.active = ActivePolicy(router, policy if router == "learned" else None, version, built, model_version)
            return self.active

    def steps_for_quality(self, target: float) -> tuple[int, np.ndarray]:
        """The fewest steps of the workload grid at which some plan reaches `target`, and the plans that do."""
        grid = sorted(set(self.tables.topology.workload.steps) | {q.steps for q in self.tables.profile.plans[0].quality})
        for steps in grid:
            ok = self.tables.quality_by_steps[:, min(steps, self.tables.max_steps)] >= target
            if ok.any():
                return steps, ok
        best = float(self.tables.quality_by_steps.max())
        raise ConfigError(f"quality_target: must be at most {best:.3f} (the best plan's accuracy_ratio), got {target}")

    def fastest_s(self, steps: int) -> float:
        """The least latency any node and plan could give `steps` with empty queues."""
        t = self.tables
        return float((t.service_s(np.array([steps]))[0] + t.link_s[:, None]).min())

    def decide(self, steps: int, deadline_s: float, allowed_plans: np.ndarray | None = None) -> Decision:
        t0 = time.perf_counter()
        if self.active is None:
            self.use("least-loaded", None)
        t, active = self.tables, self.active
        view = self.nodes.view()
        steps_a, deadline_a = np.array([steps]), np.array([deadline_s])
        if isinstance(active.policy, FixedAction):
            obs, state = np.zeros((1, 0), dtype=np.float32), None       # pass-through: no observation
        else:
            obs = t.observe(steps_a, deadline_a, view)
            state = t.network_state(steps_a, deadline_a, view)
        with self.lock:
            action = int(active.policy.decide(obs, state)[0])
        node, plan = (int(x) for x in t.encoding.decode(action))
        if allowed_plans is not None and not allowed_plans[plan]:
            # a quality target rules this plan out: the fastest allowed plan on the chosen node
            ok = np.flatnonzero(allowed_plans)
            plan = int(ok[np.argmin(t.ms_per_step[ok])])
        available = t.available(view)[0]
        est_by_node = t.estimate_s(steps_a, view)[0].reshape(t.n_nodes, t.n_plans)[:, plan]
        if not available[node] and available.any():
            # the chosen node would push back: the node with the most free room, as serve-sim does
            node = int(np.argmax(np.where(available, t.capacity - view.inflight[0], -np.inf)))
        order = [int(n) for n in np.argsort(est_by_node, kind="stable") if n != node]
        expected = float(t.service_s(steps_a)[0, node, plan])
        return Decision(node, plan, int(t.encoding.encode(node, plan)), steps, expected,
                        (time.perf_counter() - t0) * 1000.0, order, active)


class AliasFollower:
    """Keeps a learned router on what its `models:/NAME@ALIAS` names in the registry.

    A daemon thread looks at the alias every `period_s`; when it names another version than the
    active policy's, `RoutingDecider.use` builds that version aside and swaps it in. A failure to
    resolve or load is logged and the active policy keeps serving. The follower belongs to the
    active policy it was started with (and the ones it swapped in): it stops on `stop()`, or by
    itself once anything else replaced that policy (a reconfigure)."""

    def __init__(self, decider: RoutingDecider, active: ActivePolicy, seed: int | None,
                 tracking_uri: str | None, period_s: float):
        self.ref = RegistryAlias.parse(active.spec)
        if self.ref is None or active.router != "learned":
            raise ConfigError(f"policy: only a learned router's models:/NAME@ALIAS can be followed, "
                              f"got {active.spec!r}")
        self.decider, self.active, self.seed = decider, active, seed
        self.tracking_uri, self.period_s = tracking_uri, period_s
        self.stopped = threading.Event()
        self.failing = False
        self.thread = threading.Thread(target=self._run, name=f"follow {active.spec}", daemon=True)

    def start(self) -> "AliasFollower":
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop looking; wait up to `timeout_s` for a load under way (its swap is refused anyway)."""
        self.stopped.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout_s)

    def check(self) -> bool:
        """One look at the registry; True when another version was swapped in."""
        if self.ref.version(self.tracking_uri) == self.active.model_version:
            return False
        new = self.decider.use(self.active.router, self.active.spec, self.seed, self.tracking_uri, replaces=self.active)
        if new is None:              # replaced meanwhile: this follower is done
            self.stopped.set()
            return False
        log.info("router policy v%d: %s is now registry version %s (was %s)", new.version, new.spec,
                 new.model_version, self.active.model_version)
        self.active = new
        return True

    def _run(self) -> None:
        while not self.stopped.wait(self.period_s):
            if self.decider.active is not self.active:
                break
            try:
                self.check()
                if self.failing:
                    log.info("alias %s: the registry answers again", self.active.spec)
                self.failing = False
            except Exception as exc:  # the replica must keep serving whatever the registry does
                # one warning per streak of failures, not one every period
                (log.debug if self.failing else log.warning)(
                    "alias %s: could not resolve or load the new version (%s: %s); registry version %s keeps "
                    "serving, retrying every %.1f s", self.active.spec, type(exc).__name__, exc,
                    self.active.model_version, self.period_s)
                self.failing = True
