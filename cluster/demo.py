"""`make demo`: the routed image-generation endpoint, on the embedded default (local Ray, SQLite MLflow).

1. Start a local Ray and deploy the default topology's edge nodes (real generator replicas, emulated
   speed and links) behind the learned router (the shipped serve-sim policy, or `--train` a short
   one first: it is tracked in MLflow and registered as the champion the endpoint then loads).
2. Send one request per class and print where each went, how deep and how long it took; the
   images are saved as one PNG grid.
3. A short open-loop load test, logged to MLflow (`aigc-edge/serving`) with its latency CDF.
4. Print the endpoint, the demo page and the MLflow UI command, then keep serving until Ctrl-C
   (`--once` stops here: what the tests run).
"""
from __future__ import annotations

import argparse
import base64
import io
import sys
import time

from cluster.output import TrainingProgressBar, progress
from envs.config import ConfigError

DEMO_TRAIN_EPISODES = 40
LOAD_REQUESTS = 40


def say(step: str, message: str) -> None:
    progress(f"[demo {step}] {message}")


def train_router(topology: str | None) -> str:
    """A short router policy on the default topology; -> the registry URI the endpoint loads."""
    from policies.tracking import MlflowTrainingRecorder
    from policies.training import TrainConfig, train

    overrides = [f"topology={topology}"] if topology else []
    cfg = TrainConfig(scenario="serve-sim", scenario_overrides=overrides, algo="sac-mlp", episodes=DEMO_TRAIN_EPISODES,
                      run_name="demo-router", model={"network": "per-action", "hidden": 32, "critic_hidden": 32},
                      training={"demonstrations": {"policy": "greedy", "decisions": 5000, "pretrain_updates": 1000}})
    result = train(cfg, callbacks=[TrainingProgressBar("router"), MlflowTrainingRecorder()])
    return result["model_uri"]


def one_per_class(url: str, images_path) -> list[dict]:
    import httpx
    import numpy as np

    from serving.app.api import CLASS_NAMES
    from serving.generator.sampling import save_png

    rows, tiles = [], []
    with httpx.Client(base_url=url, timeout=60) as client:
        for label, name in enumerate(CLASS_NAMES):
            body = {"label": label, "steps": 10, "seed": label, "format": "json"}
            reply = client.post("/v1/generate", json=body)
            reply.raise_for_status()
            data = reply.json()
            rows.append({"class": name, **data["decision"], **data["timings"]})
            import matplotlib.image
            tiles.append(matplotlib.image.imread(io.BytesIO(base64.b64decode(data["image_png_base64"])), format="png"))
    grey = [t[..., 0] if t.ndim == 3 else t for t in tiles]
    save_png((np.concatenate(grey, axis=1) * 255).astype(np.uint8), images_path, scale=3)
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'class':<12}{'node':<9}{'plan':<15}{'steps':>6}{'quality':>9}{'total ms':>10}{'compute ms':>12}"
             f"{'link ms':>9}{'retried':>8}"]
    for r in rows:
        lines.append(f"{r['class']:<12}{r['node']:<9}{r['plan']:<15}{r['steps']:>6}{r['quality']:>9.3f}"
                     f"{r['total_ms']:>10.0f}{r['compute_ms']:>12.0f}{r['link_ms']:>9.0f}{r['retried']:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--once", action="store_true", help="stop after the requests (for tests)")
    ap.add_argument("--train", action="store_true",
                    help=f"train a short router policy ({DEMO_TRAIN_EPISODES} episodes) instead of the shipped one")
    ap.add_argument("--port", type=int, default=8000, help="HTTP port on 127.0.0.1 (default 8000)")
    ap.add_argument("--requests", type=int, default=LOAD_REQUESTS,
                    help=f"requests of the load test (default {LOAD_REQUESTS})")
    args = ap.parse_args(argv)
    from pydantic import ValidationError

    from serving.app.loadtest import LoadtestConfig
    try:                      # before the deploy: the load test's own schema says what is allowed
        LoadtestConfig(requests=args.requests)
    except ValidationError as e:
        ap.error(f"--requests: {e.errors()[0]['msg']}")
    from cluster.connect import connect
    from policies.tracking import home, tracking_uri

    started = time.monotonic()
    ray = connect()
    try:
        policy = "serving/models/router-serve-sim"
        if args.train:
            say("1/4", f"training a router policy on serve-sim for {DEMO_TRAIN_EPISODES} episodes")
            policy = train_router(None)
        url = serve_endpoint(policy, args.port)
        say("2/4", "one request per class")
        images = home() / "demo" / "one-per-class.png"
        print(format_rows(one_per_class(url, images)))
        print(f"images: {images}")
        say("3/4", f"open-loop load test, {args.requests} requests at 0.5 of the topology's capacity")
        summary = short_loadtest(url, args.requests)
        print(f"load test: mean {summary['mean_latency_ms']:.0f} ms, p99 {summary['p99_latency_ms']:.0f} ms, "
              f"SLO misses {summary['slo_miss_rate']:.1%}, {summary['completed']}/{summary['requests']} completed")
        print(f"\nendpoint  {url}/v1/generate  (POST {{\"class_name\": \"sneaker\", \"format\": \"json\"}})")
        print(f"demo page {url}/")
        print(f"MLflow UI: .venv/bin/aigc-edge ui   (store {tracking_uri()})")
        print(f"ready in {time.monotonic() - started:.0f} s")
        if args.once:
            return 0
        say("4/4", "serving until Ctrl-C")
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        say("4/4", "stopping")
        return 0
    except ConfigError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def serve_endpoint(policy: str, port: int) -> str:
    from serving.app.config import load_app_config
    from serving.app.deploy import deploy
    from serving.app.routing import resolve_policy_path

    cfg = load_app_config(None, [f"port={port}"], base={"routing": {"router": "learned",
                                                                    "policy": resolve_policy_path(policy)}})
    say("1/4", "deploying the edge nodes (generator replicas) and the learned router on Ray Serve")
    return deploy(cfg, log=lambda m: say("1/4", m))


def short_loadtest(url: str, requests: int) -> dict:
    import tempfile

    from serving.app.loadtest import LoadtestConfig, log_to_mlflow, run_loadtest

    cfg = LoadtestConfig(url=url, load=0.5, requests=requests, max_duration_s=120.0)
    result = run_loadtest(cfg, log=lambda m: say("3/4", m))
    summary = result.summary()
    with tempfile.TemporaryDirectory() as tmp:
        summary["run_id"] = log_to_mlflow([result], cfg.model_dump(mode="json"), "demo-loadtest", tmp, seed=0)
    return summary


if __name__ == "__main__":
    sys.exit(main())
