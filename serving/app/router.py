"""The Router deployment: the HTTP ingress that validates, decides (node, plan), calls the node, retries.

Errors, by design:
- 422 names the invalid field; 413 for a body over `max_body_bytes`;
- 503 with Retry-After when every node is beyond its queue bound (the router's own in-flight
  count, or Serve's BackPressureError from the node's handle);
- 504 only when no node answered before the request's deadline;
- a node replica dying (RayActorError), a node attempt overdue, or backpressure: the same request
  (same seed: the same image) goes to the next node by estimated latency.

A learned policy given as `models:/NAME@ALIAS` is followed: an `AliasFollower` thread swaps in the
version the alias names (`follow_alias_s`); it ends when the replica is reconfigured or deleted.
"""

import asyncio
import base64
import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import Field
from ray import serve
from ray.exceptions import RayActorError, TaskCancelledError
from ray.serve.exceptions import BackPressureError

from envs.config import ConfigError
from envs.topology import Topology
from serving.app.api import CLASS_NAMES, Decision, ErrorResponse, GenerateRequest, GenerateResponse, field_errors
from serving.app.config import RouterSettings
from serving.app.node import rss_mb
from serving.app.routing import AliasFollower, RegistryAlias, RoutingDecider, scenario_config

log = logging.getLogger("ray.serve")
DEMO_PAGE = Path(__file__).resolve().parent / "demo.html"
DEFAULT_STEPS = 10
# A node attempt is abandoned (and the request retried elsewhere) when it runs this far past its estimate.
OVERDUE_FACTOR, OVERDUE_GRACE_S = 3.0, 1.0

http_app = FastAPI(title="aigc-edge", version="1",
                   description="Class-conditional image generation on heterogeneous edge nodes, "
                               "routed by a learned policy (node and exit plan per request).")


class NoNodeFree(Exception):
    """Every node is beyond its queue bound."""


class DeadlinePassed(Exception):
    """No node answered before the request's deadline."""


def error(status: int, kind: str, detail: str, fields: list[str] | None = None, headers: dict | None = None):
    body = ErrorResponse(error=kind, detail=detail, fields=fields or []).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


@http_app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError):
    detail, names = field_errors(exc.errors())
    return error(422, "invalid request", detail, names)


@http_app.middleware("http")
async def _body_cap(request: Request, call_next):
    cap = getattr(http_app.state, "max_body_bytes", 16_384)
    length = request.headers.get("content-length")
    if length is not None:
        try:
            too_big = int(length) > cap
        except ValueError:
            return error(400, "bad request", "content-length: not an integer", ["content-length"])
        if too_big:
            return error(413, "body too large", f"body: at most {cap} bytes, got {length}", ["body"])
    return await call_next(request)


@serve.deployment(max_ongoing_requests=256, health_check_period_s=5.0)
@serve.ingress(http_app)
class Router:
    def __init__(self, nodes: dict, topology: dict, topology_path: str | None = None,
                 topology_overrides: list[str] | None = None, max_body_bytes: int = 16_384,
                 retry_after_s: int = 1):
        self.topology = Topology.model_validate(topology)
        self.handles = [nodes[name] for name in self.topology.node_names]
        self.decider = RoutingDecider(self.topology, scenario_config(topology_path, topology_overrides or []))
        self.retry_after_s = retry_after_s
        self.follower: AliasFollower | None = None
        http_app.state.max_body_bytes = max_body_bytes
        # the policy comes with the user_config: Serve calls reconfigure() before any request

    def reconfigure(self, user_config: dict) -> None:
        """Hot swap: the new policy is built aside; one reference is swapped (no restart, no request lost).
        The follower of the previous policy's alias (if any) stops: it follows that policy only."""
        settings = RouterSettings.model_validate(user_config or {})
        active = self.decider.use(settings.router, settings.policy, settings.seed, settings.tracking_uri)
        log.info("router policy v%d: %s %s%s", active.version, active.router, active.spec or "",
                 f" (registry version {active.model_version})" if active.model_version else "")
        if self.follower is not None:
            self.follower.stop()
            self.follower = None
        if settings.router == "learned" and settings.follow_alias_s > 0 and RegistryAlias.parse(settings.policy):
            self.follower = AliasFollower(self.decider, active, settings.seed, settings.tracking_uri,
                                          settings.follow_alias_s).start()

    def __del__(self):
        """Serve calls this when the replica is deleted: the alias follower stops with it."""
        follower = getattr(self, "follower", None)
        if follower is not None:
            follower.stop(timeout_s=1.0)

    # ---- pages ------------------------------------------------------------------------------------
    @http_app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def demo(self):
        return HTMLResponse(DEMO_PAGE.read_text())

    @http_app.get("/healthz")
    async def healthz(self) -> dict:
        a = self.decider.active
        return {"status": "ok", "router": a.router, "policy": a.spec, "policy_version": a.version,
                "model_version": a.model_version}

    @http_app.get("/v1/nodes")
    async def nodes(self) -> dict:
        """Each node type: its configuration, the router's live view, and one replica's own report."""
        t, view = self.decider.tables, self.decider.nodes.view()
        reports = await asyncio.gather(*(self._stats(h) for h in self.handles))
        out = []
        for i, node in enumerate(self.topology.nodes):
            out.append({"name": node.name, "speed": node.speed, "replicas": node.replicas,
                        "healthy_replicas": int(view.replicas[0, i]), "inflight": int(view.inflight[0, i]),
                        "backlog_s": round(float(view.backlog_s[0, i]), 3), "capacity": node.capacity,
                        "wait_s": round(float(t.wait_s(view)[0, i]), 3),
                        "link_ms": round(float(t.link_s[i]) * 1000, 1), "replica_report": reports[i]})
        a = self.decider.active
        return {"router": a.router, "policy": a.spec, "policy_version": a.version, "model_version": a.model_version,
                "router_rss_mb": round(rss_mb(), 1), "nodes": out}

    async def _stats(self, handle) -> dict | None:
        try:
            return await asyncio.wait_for(self._await(handle.stats.remote()), 1.0)
        except Exception:  # a report is best effort: the page still shows the router's own view
            return None

    @staticmethod
    async def _await(response):
        return await response

    # ---- generation ----------------------------------------------------------------------------
    @http_app.post("/v1/generate", response_model=GenerateResponse,
                   responses={200: {"content": {"image/png": {}}, "description": "PNG (format=png) or JSON"},
                              413: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                              503: {"model": ErrorResponse}, 504: {"model": ErrorResponse}})
    async def generate(self, req: GenerateRequest):
        started = time.perf_counter()
        deadline_s = req.deadline_s if req.deadline_s is not None else self.topology.slo.deadline_s
        allowed = None
        try:
            if req.quality_target is not None:
                steps, allowed = self.decider.steps_for_quality(req.quality_target)
            else:
                steps = req.steps if req.steps is not None else DEFAULT_STEPS
        except ConfigError as exc:
            return error(422, "invalid request", str(exc), ["quality_target"])
        fastest = self.decider.fastest_s(steps)
        if deadline_s < fastest:
            return error(422, "invalid request", f"deadline_s: no node can answer {steps} steps in under "
                         f"{fastest:.3f} s (its fastest plan, empty queues); got {deadline_s}", ["deadline_s"])
        decision = self.decider.decide(steps, deadline_s, allowed)
        try:
            result, node, retried = await self._call(decision, req.class_label, req.seed, started + deadline_s)
        except NoNodeFree:
            return error(503, "overloaded", "every node is beyond its queue bound; retry later", [],
                         {"Retry-After": str(self.retry_after_s)})
        except DeadlinePassed:
            return error(504, "deadline", f"no node answered within deadline_s={deadline_s}", [])
        t = self.decider.tables
        quality = float(t.quality(decision.plan, steps))
        timings = {"decision_ms": decision.decision_ms, "node_ms": result["node_ms"],
                   "compute_ms": result["compute_ms"], "emulated_compute_ms": result["emulated_compute_ms"],
                   "link_ms": result["link_ms"], "total_ms": (time.perf_counter() - started) * 1000.0}
        pol = decision.policy
        info = {"router": pol.router, "policy": pol.spec, "policy_version": pol.version,
                "model_version": pol.model_version, "node": self.topology.nodes[node].name,
                "plan": t.encoding.plans[decision.plan], "steps": steps,
                "action": int(t.encoding.encode(node, decision.plan)), "quality": quality, "retried": retried}
        if req.format == "json":
            return {"image_png_base64": base64.b64encode(result["png"]).decode(), "label": req.class_label,
                    "class_name": CLASS_NAMES[req.class_label], "decision": info, "timings": timings}
        headers = {f"x-aigc-{k.replace('_', '-')}": str(v) for k, v in info.items() if v is not None}
        headers.update({f"x-aigc-{k.replace('_', '-')}": f"{v:.2f}" for k, v in timings.items()})
        return Response(result["png"], media_type="image/png", headers=headers)

    async def _call(self, decision, label: int, seed: int, deadline_at: float) -> tuple[dict, int, int]:
        """Try the chosen node, then the others by estimate; returns (result, node, retries).

        A new request that finds every node at its queue bound is refused at once (503: backpressure
        is an answer). A request already taken by a node that then failed (its replica died, or it
        ran overdue) is the system's to finish: it keeps going round the nodes, with a short backoff,
        until one answers or its deadline passes."""
        attempts, backoff_s = 0, 0.05
        while True:
            attempts, taken = await self._round(decision, label, seed, deadline_at, attempts)
            if isinstance(taken, tuple):
                return taken
            if time.perf_counter() >= deadline_at:
                raise DeadlinePassed
            if not taken:
                raise NoNodeFree      # every node pushed back before any took the request
            await asyncio.sleep(min(backoff_s, max(0.0, deadline_at - time.perf_counter())))
            backoff_s = min(2 * backoff_s, 1.0)

    async def _round(self, decision, label: int, seed: int, deadline_at: float, attempts: int):
        """One pass over the nodes -> (attempts, (result, node, retries)) on an answer, else
        (attempts, whether some node took the request and failed)."""
        t = self.decider.tables
        plan = t.encoding.plans[decision.plan]
        taken = attempts > 0
        for node in [decision.node, *decision.fallbacks]:
            remaining = deadline_at - time.perf_counter()
            if remaining <= 0:
                raise DeadlinePassed
            if not t.available(self.decider.nodes.view())[0, node]:
                continue
            expected = float(t.service_s([decision.steps])[0, node, decision.plan])
            budget = min(remaining, OVERDUE_FACTOR * (expected + float(t.link_s[node])) + OVERDUE_GRACE_S)
            self.decider.nodes.sent(node, expected)
            attempts += 1
            response = self.handles[node].generate.remote(label, plan, decision.steps, seed)
            try:
                result = await asyncio.wait_for(self._await(response), budget)
                return attempts, (result, node, attempts - 1)
            except asyncio.TimeoutError:
                response.cancel()
                if budget >= remaining:
                    raise DeadlinePassed from None
                taken = True
                log.warning("node %s overdue after %.2f s: retrying elsewhere", t.encoding.targets[node], budget)
            except BackPressureError:
                attempts -= 1             # refused before it was taken: not a retry
            except (RayActorError, TaskCancelledError) as exc:
                taken = True
                self.decider.nodes.replica_died(node)
                log.warning("node %s replica lost (%s): retrying elsewhere", t.encoding.targets[node], type(exc).__name__)
            finally:
                self.decider.nodes.answered(node, expected)
        return attempts, taken
