"""Open-loop Poisson load on the routed endpoint: what `aigc-edge loadtest` runs and reports.

Open loop (no coordinated omission): arrival times are drawn first (seeded exponential gaps at
`rate_per_s`, or a linear ramp of the rate), every request is sent as its own task at its
scheduled time whatever the earlier ones are doing, and its latency is timed from the
*scheduled* send. Bounded: at most `requests` requests and `max_duration_s` seconds; a semaphore
caps the open connections (`max_concurrency`), and a request still waiting for it counts its wait.

Outcome of one request: completed (200), late (completed after its deadline, or 504), rejected
(503/429: backpressure) or failed (anything else, transport errors included).
SLO miss rate = (late + rejected + failed) / offered. Quality = the profile's accuracy_ratio of
the plan and steps served (reported by the router), averaged over completed requests.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field, model_validator

from envs.config import ConfigError, FloatRange, StrictModel
from serving.app.api import CLASS_NAMES


class LoadtestConfig(StrictModel):
    url: str = Field("http://127.0.0.1:8000", description="base URL of the endpoint (loopback)")
    rate_per_s: float | None = Field(None, gt=0.0, le=1000.0, description="offered requests/s (default: load x capacity)")
    load: float = Field(0.7, gt=0.0, le=5.0, description="fraction of capacity_per_s, when rate_per_s is not given")
    capacity_per_s: float | None = Field(None, gt=0.0, description="measured capacity (default: the topology's nominal)")
    ramp: FloatRange | None = Field(None, description="load from [a, b] linearly over the run, instead of a fixed load")
    requests: int = Field(300, ge=1, le=100_000)
    max_duration_s: float = Field(300.0, gt=0.0, le=3600.0)
    seed: int = 0
    steps: list[int] | None = Field(None, description="steps requests ask for, drawn uniformly (default: the topology's)")
    deadline_s: float | None = Field(None, gt=0.0, description="request deadline (default: the topology's SLO)")
    client_timeout_s: float = Field(60.0, gt=0.0)
    max_concurrency: int = Field(512, ge=1, le=10_000)
    topology: str | None = Field(None, description="topology YAML for the defaults above")

    @model_validator(mode="after")
    def _loopback(self) -> "LoadtestConfig":
        host = self.url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        if not (host in ("localhost", "::1") or host.startswith("127.")):
            raise ValueError(f"url: load tests target this machine only (loopback), got host {host!r}")
        return self


@dataclass
class Outcome:
    scheduled_s: float
    latency_s: float
    status: int                  # HTTP status, 0 for a transport error
    steps: int
    quality: float | None = None
    retried: int = 0
    node: str | None = None
    plan: str | None = None
    policy_version: str | None = None
    model_version: str | None = None     # the registry version, for a models:/ policy


@dataclass
class LoadtestResult:
    router: str
    offered_per_s: float
    deadline_s: float
    outcomes: list[Outcome] = field(default_factory=list)
    duration_s: float = 0.0

    def summary(self) -> dict:
        """The `loadtest --json` figures (DESIGN.md keys) plus counts by outcome."""
        o = self.outcomes
        done = [x for x in o if x.status == 200]
        lat = np.array([x.latency_s for x in done]) * 1000.0
        late = sum(1 for x in done if x.latency_s > self.deadline_s) + sum(1 for x in o if x.status == 504)
        rejected = sum(1 for x in o if x.status in (429, 503))
        failed = sum(1 for x in o if x.status not in (200, 429, 503, 504))
        pct = (lambda q: float(np.percentile(lat, q))) if lat.size else (lambda q: float("nan"))
        return {"router": self.router, "offered_per_s": self.offered_per_s, "requests": len(o),
                "completed": len(done), "mean_latency_ms": float(lat.mean()) if lat.size else float("nan"),
                "p50_latency_ms": pct(50), "p95_latency_ms": pct(95), "p99_latency_ms": pct(99),
                "slo_miss_rate": (late + rejected + failed) / max(len(o), 1),
                "mean_quality": float(np.mean([x.quality for x in done])) if done else float("nan"),
                "throughput_per_s": len(done) / self.duration_s if self.duration_s else 0.0,
                "errors": sum(1 for x in o if x.status != 200), "retried": sum(x.retried for x in done),
                "late": late, "rejected": rejected, "failed": failed, "deadline_s": self.deadline_s,
                "duration_s": self.duration_s, "steady_throughput_per_s": self.steady_throughput_per_s(),
                "status_counts": {str(k): v for k, v in sorted(Counter(x.status for x in o).items())},
                "nodes": dict(Counter(x.node for x in done)), "plans": dict(Counter(x.plan for x in done)),
                "policy_versions": dict(Counter(x.policy_version for x in done)),
                "model_versions": dict(Counter(x.model_version for x in done if x.model_version))}


    def steady_throughput_per_s(self, skip_s: float = 5.0) -> float:
        """Answers per second between `skip_s` after the first arrival and the last arrival: the
        rate the endpoint sustains, without the start (empty queues) and the drain."""
        if not self.outcomes:
            return 0.0
        end = max(o.scheduled_s for o in self.outcomes)
        if end <= skip_s * 2:
            skip_s = 0.0
        done = sum(1 for o in self.outcomes if o.status == 200 and skip_s <= o.scheduled_s + o.latency_s <= end)
        return done / max(end - skip_s, 1e-9)


def arrival_times(n: int, rate_per_s: float, seed: int, ramp: tuple[float, float] | None = None,
                  capacity_per_s: float | None = None) -> np.ndarray:
    """Seeded Poisson arrival offsets (s). With a ramp, the rate goes linearly from ramp[0] to
    ramp[1] x capacity over the n arrivals (a time-varying Poisson process by thinning order)."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0, size=n)
    if ramp is None:
        return np.cumsum(gaps / rate_per_s)
    rates = np.linspace(ramp[0], ramp[1], n) * capacity_per_s
    return np.cumsum(gaps / rates)


def request_bodies(n: int, steps: list[int], seed: int, deadline_s: float | None) -> list[dict]:
    rng = np.random.default_rng([seed, 1])
    labels = rng.integers(0, len(CLASS_NAMES), size=n)
    chosen = rng.choice(np.array(steps), size=n)
    out = []
    for i in range(n):
        body = {"label": int(labels[i]), "steps": int(chosen[i]), "seed": int(i), "format": "png"}
        if deadline_s is not None:
            body["deadline_s"] = deadline_s
        out.append(body)
    return out


async def _send(client, sem, t0: float, at: float, body: dict, timeout: float) -> Outcome:
    delay = t0 + at - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    async with sem:
        try:
            r = await client.post("/v1/generate", json=body, timeout=timeout)
            status, h = r.status_code, r.headers
        except Exception:  # a transport error is an outcome to count, not a crash of the test
            status, h = 0, {}
    latency = time.perf_counter() - (t0 + at)
    out = Outcome(at, latency, status, body["steps"])
    if status == 200:
        out.quality = float(h.get("x-aigc-quality", "nan"))
        out.retried = int(h.get("x-aigc-retried", 0))
        out.node, out.plan = h.get("x-aigc-node"), h.get("x-aigc-plan")
        out.policy_version = h.get("x-aigc-policy-version")
        out.model_version = h.get("x-aigc-model-version")
    return out


async def run_loadtest_async(cfg: LoadtestConfig, router: str | None = None, log=None) -> LoadtestResult:
    import httpx

    from envs.topology import load_topology
    from envs.serve_sim import RoutingTables

    topology = load_topology(cfg.topology)
    capacity = cfg.capacity_per_s or RoutingTables(topology).nominal_capacity_per_s
    rate = cfg.rate_per_s or cfg.load * capacity
    deadline = cfg.deadline_s or topology.slo.deadline_s
    arrivals = arrival_times(cfg.requests, rate, cfg.seed, cfg.ramp, capacity)
    arrivals = arrivals[arrivals <= cfg.max_duration_s]
    bodies = request_bodies(len(arrivals), cfg.steps or topology.workload.steps, cfg.seed, cfg.deadline_s)
    limits = httpx.Limits(max_connections=cfg.max_concurrency, max_keepalive_connections=cfg.max_concurrency)
    async with httpx.AsyncClient(base_url=cfg.url, limits=limits, timeout=cfg.client_timeout_s) as client:
        try:
            health = await client.get("/healthz")
        except httpx.TransportError as exc:
            raise ConfigError(f"url: no endpoint answers at {cfg.url} ({type(exc).__name__}); start one with "
                              "`aigc-edge serve` or give its base URL with --url") from None
        if router is None:
            router = health.json().get("router", "unknown")
        offered = len(arrivals) / arrivals[-1] if len(arrivals) > 1 else rate
        if log:
            log(f"loadtest {router}: {len(arrivals)} requests at {offered:.2f}/s "
                f"({'ramp ' + str(list(cfg.ramp)) if cfg.ramp else f'{rate / capacity:.2f} of {capacity:.2f}/s'})")
        sem = asyncio.Semaphore(cfg.max_concurrency)
        t0 = time.perf_counter() + 0.05
        tasks = [asyncio.create_task(_send(client, sem, t0, float(a), b, cfg.client_timeout_s))
                 for a, b in zip(arrivals, bodies)]
        outcomes = await asyncio.gather(*tasks)
        duration = time.perf_counter() - t0
    return LoadtestResult(router, float(offered), deadline, list(outcomes), duration)


def run_loadtest(cfg: LoadtestConfig, router: str | None = None, log=None) -> LoadtestResult:
    return asyncio.run(run_loadtest_async(cfg, router, log))


def latency_cdf_plot(results: list[LoadtestResult], path, title: str = "latency CDF"):
    """One CDF curve per router (completed requests), the deadline as a vertical line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for res in results:
        lat = np.sort([o.latency_s for o in res.outcomes if o.status == 200])
        if lat.size:
            ax.plot(lat, np.arange(1, lat.size + 1) / len(res.outcomes), label=res.router)
    if results:
        ax.axvline(results[0].deadline_s, color="k", ls="--", lw=0.8, label="deadline")
    ax.set_xlabel("latency from scheduled send (s)")
    ax.set_ylabel("fraction of offered requests answered")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_to_mlflow(results: list[LoadtestResult], config: dict, run_name: str, plot_dir, seed: int | None = None) -> str:
    """One MLflow run in `aigc-edge/serving`: each router's figures as metrics, the CDF plot."""
    from pathlib import Path

    from policies.tracking import EXPERIMENT_SERVING, tracked_run

    plot = latency_cdf_plot(results, Path(plot_dir) / f"{run_name}-latency-cdf.png", run_name)
    with tracked_run(EXPERIMENT_SERVING, config, seed=seed, run_name=run_name) as run:
        import mlflow

        for res in results:
            s = res.summary()
            mlflow.log_metrics({f"{res.router}/{k}": float(v) for k, v in s.items()
                                if isinstance(v, (int, float)) and np.isfinite(v)})
        mlflow.log_artifact(str(plot), "plots")
        return run.info.run_id
