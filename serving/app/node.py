"""EdgeNode: one Serve deployment per node type of the topology; each replica a real generator.

Real compute, emulated hardware and network, said plainly:
- compute is the shipped multi-exit U-ViT (`serving.generator.generate`), one request at a time per
  replica (a semaphore: the other admitted requests wait inside the replica, as on a real box);
- hardware speed is emulated by padding: after the real compute the replica sleeps until the
  profile's time for this plan and steps / `speed` has passed (if the real compute took longer,
  nothing is added: two cores shared by all replicas can be slower than the profile);
- the link is emulated by sleeping the transfer time of the link model before (request up) and
  after (result down) the compute; loopback carries the bytes.

Serve's own routing chooses among the replicas of one node type (one deployment); the Router
chooses the node type.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import time
import zlib

import numpy as np
from ray import serve

from envs.serve_sim import RoutingTables
from envs.topology import Topology

PNG_SCALE = 4        # 28x28 samples are shown 112x112 (nearest neighbour)


def to_png(image) -> bytes:
    """[1, H, W] in [-1, 1] -> PNG bytes (grey, upscaled)."""
    from PIL import Image

    pixels = ((image[0].float().numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    pixels = np.kron(pixels, np.ones((PNG_SCALE, PNG_SCALE), dtype=np.uint8))
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()


def rss_mb() -> float:
    """Resident memory of this process, MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@serve.deployment(max_ongoing_requests=2, health_check_period_s=2.0, health_check_timeout_s=10.0)
class EdgeNode:
    def __init__(self, node_name: str, topology: dict, model_dir: str | None = None, seed: int = 0):
        import torch

        from serving.generator import load_generator

        torch.set_num_threads(1)     # two cores for every replica and the router: one thread each
        self.topology = Topology.model_validate(topology)
        self.node = self.topology.node(node_name)
        self.tables = RoutingTables(self.topology)
        self.plan_ms = {name: float(ms) for name, ms in zip(self.tables.encoding.plans, self.tables.ms_per_step)}
        self.generator = load_generator(model_dir)
        context = serve.get_replica_context()
        self.replica_id = context.replica_id.to_full_id_str() if context else f"local-{os.getpid()}"
        self.rng = np.random.default_rng([seed, zlib.crc32(self.replica_id.encode())])
        self.compute_slot: asyncio.Semaphore | None = None
        # one compute thread: the semaphore admits one request at a time anyway, and fewer threads
        # are fewer malloc arenas (resident memory)
        self.compute_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="generate")
        self.served, self.busy_s, self.inside, self.started = 0, 0.0, 0, time.time()
        from serving.generator.sampling import generate
        self._generate = generate
        generate(self.generator, [0], plan="full", steps=1)      # warm up before taking traffic

    def _transfer_s(self, kbit: float) -> float:
        link = self.node.link
        jitter = self.rng.exponential(link.jitter_ms) if link.jitter_ms > 0 else 0.0
        return (link.rtt_ms / 2 + jitter) / 1000.0 + kbit / (link.mbit_s * 1000.0)

    async def generate(self, label: int, plan: str, steps: int, seed: int) -> dict:
        """One image; idempotent (same label, plan, steps and seed give the same pixels on any node)."""
        if plan not in self.plan_ms:
            raise ValueError(f"plan: {plan!r} is not offered by this topology; allowed: {list(self.plan_ms)}")
        t0 = time.perf_counter()
        self.inside += 1
        try:
            up = self._transfer_s(self.topology.workload.request_kbit)
            await asyncio.sleep(up)
            if self.compute_slot is None:
                self.compute_slot = asyncio.Semaphore(1)
            queued = time.perf_counter()
            async with self.compute_slot:
                start = time.perf_counter()
                images = await asyncio.get_running_loop().run_in_executor(
                    self.compute_thread, lambda: self._generate(self.generator, [label], plan=plan, steps=steps, seed=seed))
                compute = time.perf_counter() - start
                target = self.plan_ms[plan] * steps / 1000.0 / self.node.speed
                await asyncio.sleep(max(target - compute, 0.0))
                busy = time.perf_counter() - start
            png = to_png(images[0])         # a 112x112 grey PNG: well under a millisecond
            down = self._transfer_s(self.topology.workload.result_kbit)
            await asyncio.sleep(down)
            self.served += 1
            self.busy_s += busy
            return {"png": png, "node": self.node.name, "replica": self.replica_id,
                    "link_ms": (up + down) * 1000.0, "queue_ms": (start - queued) * 1000.0,
                    "compute_ms": compute * 1000.0, "emulated_compute_ms": busy * 1000.0,
                    "node_ms": (time.perf_counter() - t0) * 1000.0}
        finally:
            self.inside -= 1

    def stats(self) -> dict:
        """This replica's state in the observation's units (requests, seconds) and its memory."""
        return {"node": self.node.name, "replica": self.replica_id, "pid": os.getpid(),
                "inside": self.inside, "served": self.served, "busy_s": round(self.busy_s, 3),
                "uptime_s": round(time.time() - self.started, 1), "rss_mb": round(rss_mb(), 1),
                "speed": self.node.speed, "replicas": self.node.replicas,
                "link_ms": round(self.tables.link_s[self.topology.node_names.index(self.node.name)] * 1000, 1)}

    def check_health(self) -> None:
        if self.generator is None:
            raise RuntimeError("generator not loaded")
