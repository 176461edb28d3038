"""`aigc-edge train`: train an agent on a scenario, checkpoint, resume, track in MLflow.

Order of things (what `train` does, top to bottom):
1. Build the RLlib algorithm of `TrainConfig.algo` (policies/algorithms.py) on Ray (local, or
   the cluster of RAY_ADDRESS), or restore it from the run's last checkpoint with `resume`.
2. Iterate `algo.train()` until `episodes` simulated episodes finished (every copy counts).
   Our algorithms start exactly `episodes` episodes and number them in the order they start
   (see EdgeDecisionRunner), so "the last 10" are the last 10 started, not the slowest to end.
   After each iteration: one MLflow `log_batch` with a whitelist of metrics; every
   `checkpoint_every_s` seconds an RLlib checkpoint (written beside, then swapped in).
3. At the end: the last checkpoint, the learning curve (per-episode mean delay or reward, PNG +
   CSV), and the policy artifact (diffusion agents: RLModule folder + policy_spec.json, registered
   as `aigc-edge-policy-<scenario>` with alias `champion`).

Run state lives in `$AIGC_EDGE_HOME/checkpoints/<run name>/`: `algo/` (RLlib checkpoint),
`run.json` (MLflow run id, progress), `episodes.csv`, `policy/`, `learning_curve.png`.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from pydantic import Field

from envs.config import StrictModel

Algo = Literal["lad", "d2sac", "sac-mlp", "sac", "ppo", "dqn"]

# The metrics logged to MLflow each iteration (result key -> MLflow name); nothing else is logged.
METRICS = {
    ("edge/episodes",): "charts/episodes",
    ("edge/decisions",): "charts/decisions",
    ("edge/sgd_steps",): "charts/sgd_steps",
    ("edge/mean_delay_last10_s",): "charts/mean_delay_last10_s",
    ("edge/mean_return_last10",): "charts/mean_return_last10",
    ("edge/sample_s",): "time/sample_s",
    ("edge/learn_s",): "time/learn_s",
    ("learners", "default_policy", "losses/critic"): "losses/critic",
    ("learners", "default_policy", "losses/actor"): "losses/actor",
    ("learners", "default_policy", "charts/entropy"): "charts/entropy",
    ("learners", "default_policy", "charts/alpha"): "charts/alpha",
    ("learners", "default_policy", "charts/logit_scale"): "charts/logit_scale",
    ("learners", "default_policy", "charts/q_gap"): "charts/q_gap",
    ("learners", "default_policy", "charts/demo_share"): "charts/demo_share",
    ("learners", "default_policy", "total_loss"): "losses/total",
    ("learners", "default_policy", "qf_loss"): "losses/critic",
    ("learners", "default_policy", "policy_loss"): "losses/actor",
    ("learners", "default_policy", "vf_loss"): "losses/value",
    ("learners", "default_policy", "entropy"): "charts/entropy",
    ("env_runners", "episode_return_mean"): "charts/episode_return_mean",
    ("time_this_iter_s",): "time/iter_s",
}


class TrainConfig(StrictModel):
    """Everything `aigc-edge train` needs; `--set key=value` overrides any field."""

    scenario: str = Field("dedgeai", description="preset name or YAML path")
    scenario_overrides: list[str] = Field(default_factory=list,
                                          description="key=value overrides of the scenario config")
    algo: Algo = Field("lad", description="lad | d2sac | sac-mlp (our discrete SAC) | sac | ppo | dqn (RLlib)")
    episodes: int = Field(60, ge=1, description="simulated episodes to train (every copy counts)")
    seed: int = Field(0, description="seed of the env copies and the networks")
    num_envs: int = Field(10, ge=1, le=4096, description="vectorised copies per env runner")
    num_env_runners: int = Field(0, ge=0, description="remote env runners (0: sample in the driver)")
    num_cpus: int | None = Field(None, description="CPUs of a local Ray (default: all)")
    training: dict[str, Any] = Field(default_factory=dict, description="AlgorithmConfig.training() overrides")
    model: dict[str, Any] = Field(default_factory=dict, description="model_config overrides (diffusion agents)")
    checkpoint_every_s: float = Field(60.0, gt=0, description="seconds between RLlib checkpoints")
    run_name: str | None = Field(None, description="checkpoint folder / MLflow run name (default: derived)")
    register_policy: bool = Field(True, description="register the policy artifact in the MLflow model registry")
    max_wall_s: float | None = Field(None, description="stop early after this many seconds (still saves)")

    def name(self) -> str:
        if self.run_name:
            return self.run_name
        form = ""
        for item in self.scenario_overrides:
            if item.startswith(("form=", "mode=")):
                form += "-" + item.split("=", 1)[1]
        return f"{self.scenario.replace('/', '-')}{form}-{self.algo}-seed{self.seed}"


def _get(result: dict, path: tuple) -> Any:
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def _per_module_mean(result: dict, path: tuple) -> Any:
    """A learner metric of RLlib's multi-agent runs (one module per BS, no `default_policy`):
    its mean over the modules that report it."""
    learners = result.get("learners")
    if path[:2] != ("learners", "default_policy") or not isinstance(learners, dict):
        return None
    values = [m[path[2]] for module_id, m in learners.items() if not module_id.startswith("__")
              and isinstance(m, dict) and isinstance(m.get(path[2]), (int, float, np.floating, np.integer))]
    return float(np.mean(values)) if values else None


def whitelisted_metrics(result: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for path, name in METRICS.items():
        value = _get(result, path)
        if value is None:
            value = _per_module_mean(result, path)
        if isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value):
            out[name] = float(value)
    return out


# ---- Ray ---------------------------------------------------------------------------------------
def init_ray(num_cpus: int | None = None):
    """A local Ray (or the cluster of RAY_ADDRESS); quiet, no usage stats, no dashboard."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray
    if ray.is_initialized():
        return ray
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    return ray


# ---- episode bookkeeping of the RLlib baselines -------------------------------------------------
# (mean reward per decision, decisions) of every episode RLlib's stock env runners finished in
# this process (the local runner, num_env_runners=0): RLlib's own metrics only report windowed
# means, and a reduce=None list turned out to re-report earlier episodes. Remote runners'
# episodes are counted, not logged.
FINISHED_EPISODES: list[tuple[float, int]] = []


def baseline_callbacks():
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class EpisodeDelay(RLlibCallback):
        """Per-episode mean reward per decision, summed over the chunks RLlib cuts an episode
        into: every `sample()` returns only the steps since the previous one, and
        `on_episode_end` sees the last chunk alone (a 30,000-decision dedgeai episode then
        looked like its last few hundred decisions, the most loaded ones)."""

        def __init__(self):
            super().__init__()
            self.open: dict[str, list[float]] = {}     # episode id -> [return, decisions]

        def on_sample_end(self, *, samples, **kwargs):
            for chunk in samples:
                total = self.open.setdefault(chunk.id_, [0.0, 0])
                total[0] += float(chunk.get_return())
                total[1] += len(chunk)
                if chunk.is_done:
                    episode_return, decisions = self.open.pop(chunk.id_)
                    FINISHED_EPISODES.append((episode_return / max(decisions, 1), decisions))

    return EpisodeDelay


class EpisodeBook:
    """Completed episodes in order, from our algorithms (exact) or RLlib's (via the callback)."""

    def __init__(self, algo, delay_is_reward: bool):
        self.algo, self.delay_is_reward = algo, delay_is_reward
        self.ours = hasattr(algo, "episodes")
        self.extra: list[dict] = []

    @property
    def episodes(self) -> list[dict]:
        return self.algo.episodes if self.ours else self.extra

    def update(self, result: dict) -> None:
        if self.ours:
            return
        values = list(FINISHED_EPISODES)
        FINISHED_EPISODES.clear()
        lifetime = _get(result, ("env_runners", "num_episodes_lifetime"))
        if lifetime is not None:
            # episodes finished before a resume, or on remote runners: counted, value unknown
            for _ in range(int(lifetime) - len(self.extra) - len(values)):
                self.extra.append({"episode": len(self.extra) + 1})
        for v, decisions in values:
            rec = {"episode": len(self.extra) + 1, "mean_reward": float(v), "decisions": int(decisions)}
            if self.delay_is_reward:
                rec["mean_delay_s"] = -float(v)
            self.extra.append(rec)


# ---- the loop ----------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Train (or resume) and return the `aigc-edge train --json` figures."""
    import torch
    torch.set_num_threads(1)
    from envs import tracking
    from envs.scenarios import load_scenario, scenario_name
    from policies.algorithms import DIFFUSION_ALGOS, algorithm_config

    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    scen = load_scenario(cfg.scenario, cfg.scenario_overrides)
    scenario = scenario_name(scen)
    # Config errors surface here, before anything of an earlier run is touched.
    env_config = {"scenario": cfg.scenario, "overrides": list(cfg.scenario_overrides), "seed": cfg.seed}
    algo_cfg = algorithm_config(cfg.algo, env_config, num_envs=cfg.num_envs,
                                num_env_runners=cfg.num_env_runners, seed=cfg.seed,
                                training=cfg.training, model=cfg.model)
    run_dir = tracking.checkpoints_dir() / cfg.name()
    algo_dir, state_file = run_dir / "algo", run_dir / "run.json"
    state: dict = json.loads(state_file.read_text()) if (resume and state_file.is_file()) else {}
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    init_ray(cfg.num_cpus)
    if cfg.algo in DIFFUSION_ALGOS:
        # Start exactly `episodes` episodes (split over the runners), so the run ends when they
        # finish and no episode is cut short or left out of the numbering.
        algo_cfg.training(episode_budget=-(-cfg.episodes // max(1, cfg.num_env_runners)))
    else:
        algo_cfg = algo_cfg.callbacks(baseline_callbacks())
    algo = algo_cfg.build_algo()
    book = EpisodeBook(algo, delay_is_reward=scen.scenario == "dedgeai")
    resumed_from = None
    if resume and algo_dir.is_dir():
        algo.restore_from_path(str(algo_dir))
        if not book.ours:
            book.extra = [e for e in state.get("episodes", []) if state.get("book_version") == 2]
        resumed_from = len(book.episodes)
        # RLlib's stock env runners restart their envs' episode streams on a resume (ours
        # continue theirs): a run's episodes can be replayed only knowing where it resumed.
        state["resumed_at"] = state.get("resumed_at", []) + [resumed_from]
        say(f"resumed {cfg.name()} from {algo_dir}: {resumed_from} episodes done")

    mlflow = tracking.configure_mlflow()
    from mlflow.entities import Metric
    client = mlflow.MlflowClient()
    run_id = state.get("run_id")
    config_dict = {"train": cfg.model_dump(mode="json"), "scenario_config": scen.model_dump(mode="json")}
    if run_id:
        run_ctx = mlflow.start_run(run_id=run_id)
    else:
        run_ctx = tracking.tracked_run(tracking.EXPERIMENT_TRAIN, config_dict, seed=cfg.seed,
                                       run_name=cfg.name(), tags={"algo": cfg.algo, "scenario": scenario})
    started = time.monotonic()
    wall_before = float(state.get("wall_s", 0.0))
    with run_ctx as run:
        run_id = run.info.run_id
        state.update({"run_id": run_id, "name": cfg.name()})
        last_ckpt = time.monotonic()
        iteration = int(state.get("iterations", 0))
        while len(book.episodes) < cfg.episodes:
            result = algo.train()
            book.update(result)
            iteration += 1
            metrics = whitelisted_metrics(result)
            recent = [e for e in book.episodes[-10:]]
            if recent and not book.ours:
                metrics["charts/episodes"] = len(book.episodes)
                delays = [e["mean_delay_s"] for e in recent if "mean_delay_s" in e]
                if delays:
                    metrics["charts/mean_delay_last10_s"] = float(np.mean(delays))
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, v, now, iteration) for k, v in metrics.items()])
            if iteration % 10 == 0:
                say(f"[{cfg.name()}] iter {iteration}: {len(book.episodes)}/{cfg.episodes} episodes, "
                    f"last-10 mean delay {metrics.get('charts/mean_delay_last10_s', float('nan')):.2f} s, "
                    f"{time.monotonic() - started:.0f} s")
            if time.monotonic() - last_ckpt >= cfg.checkpoint_every_s:
                _checkpoint(algo, algo_dir, state, state_file, book, iteration,
                            wall_before + time.monotonic() - started)
                last_ckpt = time.monotonic()
            if cfg.max_wall_s and time.monotonic() - started > cfg.max_wall_s:
                say(f"[{cfg.name()}] stopping at max_wall_s={cfg.max_wall_s}")
                break
        wall_s = wall_before + time.monotonic() - started
        _checkpoint(algo, algo_dir, state, state_file, book, iteration, wall_s)
        episodes = book.episodes[:cfg.episodes]
        curve = _write_curve(run_dir, episodes, scen, cfg)
        mlflow.log_artifact(str(curve), "plots")
        mlflow.log_artifact(str(run_dir / "episodes.csv"), "plots")
        result = {"scenario": scenario, "algo": cfg.algo, "episodes": len(book.episodes),
                  "wall_s": round(wall_s, 2), "checkpoint": str(algo_dir), "run_id": run_id}
        last = episodes[-10:]
        if last and scen.scenario == "dedgeai":
            result["final_mean_delay_s"] = float(np.nanmean([e.get("mean_delay_s", np.nan) for e in last]))
        elif last:
            result["final_mean_reward"] = float(np.nanmean([e.get("mean_reward", np.nan) for e in last]))
        if resumed_from is not None:
            result["resumed_from_episode"] = resumed_from
            result["resumed_at"] = state["resumed_at"]
        client.log_batch(run_id, metrics=[Metric(f"final/{k}", float(v), int(time.time() * 1000), iteration)
                                          for k, v in result.items()
                                          if k.startswith("final_") or k == "wall_s"])
        if cfg.algo in DIFFUSION_ALGOS:
            policy_dir = export_policy(algo, run_dir / "policy", scen, cfg)
            mlflow.log_artifacts(str(policy_dir), "policy")
            result["policy"] = str(policy_dir)
            if cfg.register_policy:
                result["model_uri"] = _register(mlflow, client, run_id, scenario)
    algo.stop()
    return result


def _checkpoint(algo, algo_dir: Path, state: dict, state_file: Path, book: EpisodeBook,
                iteration: int, wall_s: float) -> None:
    """Write the RLlib checkpoint beside the last one, then swap: a kill never leaves half of one."""
    tmp = algo_dir.with_name("algo.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    algo.save_to_path(str(tmp))
    old = algo_dir.with_name("algo.old")
    if algo_dir.exists():
        algo_dir.rename(old)
    tmp.rename(algo_dir)
    if old.exists():
        shutil.rmtree(old)
    state.update({"iterations": iteration, "episodes_done": len(book.episodes), "wall_s": wall_s})
    if not book.ours:
        state["episodes"], state["book_version"] = book.extra, 2
    state_file.write_text(json.dumps(state))
    _write_episodes_csv(state_file.parent / "episodes.csv", book.episodes)


def _write_episodes_csv(path: Path, episodes: list[dict]) -> None:
    keys = ["episode", "mean_delay_s", "mean_reward", "return", "decisions", "decisions_total", "start", "worker"]
    lines = [",".join(keys)]
    for e in episodes:
        lines.append(",".join("" if e.get(k) is None else f"{e[k]}" for k in keys))
    path.write_text("\n".join(lines) + "\n")


GREEDY_DELAY_S = 7.8   # dedgeai faithful, public-code figures (DESIGN.md)
RANDOM_DELAY_S = 16.9


def _write_curve(run_dir: Path, episodes: list[dict], scen, cfg: TrainConfig) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _write_episodes_csv(run_dir / "episodes.csv", episodes)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    delay = any("mean_delay_s" in e for e in episodes)
    ys = [e.get("mean_delay_s", np.nan) if delay else e.get("mean_reward", np.nan) for e in episodes]
    ax.plot(range(1, len(ys) + 1), ys, label=cfg.algo)
    if delay and getattr(scen, "mode", None) == "faithful":     # the figures are faithful mode's
        ax.axhline(GREEDY_DELAY_S, ls="--", c="k", lw=0.8, label="greedy ~7.8 s")
        ax.axhline(RANDOM_DELAY_S, ls=":", c="gray", lw=0.8, label="random ~16.9 s")
    ax.set_xlabel("episode (all vectorised copies)")
    ax.set_ylabel("mean per-task delay (s)" if delay else "mean reward per decision")
    ax.set_title(cfg.name())
    ax.legend()
    fig.tight_layout()
    path = run_dir / "learning_curve.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def export_policy(algo, folder: Path, scen, cfg: TrainConfig) -> Path:
    """The policy artifact from the learner's module (not the runner's inference copy)."""
    from policies.artifact import write_artifact

    if folder.exists():
        shutil.rmtree(folder)
    module = algo.learner_group._learner.module["default_policy"]
    return write_artifact(folder, module=module, config=scen, algorithm=cfg.algo,
                          training_config=cfg.model_dump(mode="json"), lad_store=algo.lad_store())


def _register(mlflow, client, run_id: str, scenario: str) -> str:
    from envs.tracking import CHAMPION_ALIAS, policy_model_name

    from mlflow.exceptions import MlflowException

    name = policy_model_name(scenario)
    try:
        client.create_registered_model(name, description="aigc-edge policy artifacts (policy_spec.json + RLModule)")
    except MlflowException:
        pass  # already registered
    # The artifact is a folder, not an MLflow-flavoured model: register its artifact location.
    source = mlflow.get_artifact_uri("policy")
    version = client.create_model_version(name, source=source, run_id=run_id)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
    return f"models:/{name}@{CHAMPION_ALIAS}"
