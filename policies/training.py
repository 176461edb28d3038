"""`aigc-edge train`: train an agent on a scenario, checkpoint, resume; report through callbacks.

Order of things (what `train` does, top to bottom):
1. Build the RLlib algorithm of `TrainConfig.algo` (`policies/registry.py`) on the Ray the caller
   connected to (`cluster/connect.py`), or restore it from the run's last checkpoint with `resume`.
2. Iterate `algo.train()` until `episodes` simulated episodes finished (every copy counts).
   Our algorithms start exactly `episodes` episodes and number them in the order they start
   (see `EdgeDecisionRunner`), so "the last 10" are the last 10 started, not the slowest to end.
   After each iteration the callbacks get a whitelist of metrics; every `checkpoint_every_s`
   seconds an RLlib checkpoint is written beside the last one, then swapped in.
3. At the end: the last checkpoint, the learning curve (per-episode mean delay or reward, PNG +
   CSV), and the policy artifact (our agents: RLModule folder + policy_spec.json).

How a run is recorded is the callbacks' business: the CLI shows progress on stderr and records an
MLflow run that registers the policy (`policies/tracking.py`); a Tune trial reports to Tune.

Run state lives in `$AIGC_EDGE_HOME/checkpoints/<run name>/`: `algo/` (RLlib checkpoint),
`run.json` (progress, and what callbacks keep there), `episodes.csv`, `policy/`, `learning_curve.png`.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Literal, Union

import numpy as np
from pydantic import Field, model_validator

from envs.config import StrictModel, validate_nested
from policies.options import DQNOptions, ModelOptions, PPOOptions, RLlibSACOptions, SACOptions
from policies.callbacks import TrainingCallbacks, TrainProgress
from policies.registry import ALGO_NAMES, algorithm

TrainingOptions = Union[SACOptions, PPOOptions, DQNOptions, RLlibSACOptions]

# The metrics reported each iteration (result key -> name); nothing else is reported.
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
    algo: Literal[ALGO_NAMES] = Field("lad", description=" | ".join(ALGO_NAMES))
    episodes: int = Field(60, ge=1, description="simulated episodes to train (every copy counts)")
    seed: int = Field(0, description="seed of the env copies and the networks")
    num_envs: int = Field(10, ge=1, le=4096, description="vectorised copies per env runner")
    num_env_runners: int = Field(0, ge=0, description="remote env runners (0: sample in the driver)")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray (default: all)")
    training: TrainingOptions = Field(default_factory=SACOptions,
                                      description="the algorithm's options (policies/options.py)")
    model: ModelOptions | None = Field(None, description="network options of lad, d2sac, sac-mlp")
    checkpoint_every_s: float = Field(60.0, gt=0, description="seconds between RLlib checkpoints")
    run_name: str | None = Field(None, description="checkpoint folder / MLflow run name (default: derived)")
    register_policy: bool = Field(True, description="register the policy artifact in the MLflow model registry")
    max_wall_s: float | None = Field(None, gt=0, description="stop early after this many seconds (still saves)")
    init_from: str | None = Field(None, description="start from a source policy's weights (transfer): an artifact "
                                                    "or run folder, or an MLflow URI")

    @model_validator(mode="before")
    @classmethod
    def _options_of_the_algorithm(cls, data: Any) -> Any:
        """`training` is validated as the options of `algo` (SACOptions for ours, ...)."""
        if isinstance(data, dict):
            data = dict(data)
            spec = algorithm(data.get("algo", "lad")) if data.get("algo", "lad") in ALGO_NAMES else None
            if spec is not None:
                data["training"] = validate_nested(spec.options, data.get("training"), ("training",))
                if spec.ours:
                    data["model"] = validate_nested(ModelOptions, data.get("model"), ("model",))
        return data

    @model_validator(mode="after")
    def _model_only_for_ours(self) -> "TrainConfig":
        if self.model is not None and not algorithm(self.algo).ours:
            raise ValueError(f"model options are for lad, d2sac and sac-mlp; {self.algo} uses RLlib's MLP models")
        return self

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


# ---- the loop ----------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False, callbacks: Iterable[TrainingCallbacks] = (),
          run_root: Path | None = None) -> dict:
    """Train (or resume) and return the `aigc-edge train --json` figures. The run's folder is
    `run_root / cfg.name()` (default: `$AIGC_EDGE_HOME/checkpoints/`)."""
    import torch
    torch.set_num_threads(1)
    from envs.scenarios import load_scenario, make_core, scenario_name
    from policies.baselines.episodes import EpisodeBook, baseline_callbacks
    from policies.registry import algorithm_config
    from policies.tracking import checkpoints_dir

    callbacks = list(callbacks)
    scen = load_scenario(cfg.scenario, cfg.scenario_overrides)
    scenario = scenario_name(scen)
    ours = algorithm(cfg.algo).ours
    # Config errors surface here, before anything of an earlier run is touched.
    env_config = {"scenario": cfg.scenario, "overrides": list(cfg.scenario_overrides), "seed": cfg.seed}
    algo_cfg = algorithm_config(cfg.algo, env_config, num_envs=cfg.num_envs,
                                num_env_runners=cfg.num_env_runners, seed=cfg.seed,
                                training=cfg.training, model=cfg.model)
    run_dir = Path(run_root or checkpoints_dir()) / cfg.name()
    algo_dir, state_file = run_dir / "algo", run_dir / "run.json"
    state: dict = json.loads(state_file.read_text()) if (resume and state_file.is_file()) else {}
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    if ours:
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
        for c in callbacks:
            c.on_message(f"resumed {cfg.name()} from {algo_dir}: {resumed_from} episodes done")
    elif cfg.init_from:
        initialise_from(algo, cfg.init_from, scen)
        for c in callbacks:
            c.on_message(f"[{cfg.name()}] initialised from {cfg.init_from}")
    state["name"] = cfg.name()
    for c in callbacks:
        c.on_start(cfg, scen, state, resumed_from)
    for c in callbacks:
        c.on_algorithm(algo)

    expected = cfg.episodes * make_core(scen, 1, 0).mean_episode_decisions()
    started = time.monotonic()
    wall_before = float(state.get("wall_s", 0.0))
    try:
        last_ckpt = time.monotonic()
        iteration = int(state.get("iterations", 0))
        while len(book.episodes) < cfg.episodes:
            result = algo.train()
            book.update(result)
            iteration += 1
            metrics = whitelisted_metrics(result)
            recent = book.episodes[-10:]
            if recent and not book.ours:
                metrics["charts/episodes"] = len(book.episodes)
                delays = [e["mean_delay_s"] for e in recent if "mean_delay_s" in e]
                if delays:
                    metrics["charts/mean_delay_last10_s"] = float(np.mean(delays))
            progress = _progress(cfg, book, algo, result, iteration, expected, time.monotonic() - started)
            for c in callbacks:
                c.on_iteration(progress, metrics)
            if time.monotonic() - last_ckpt >= cfg.checkpoint_every_s:
                _checkpoint(algo, algo_dir, state, state_file, book, iteration,
                            wall_before + time.monotonic() - started)
                last_ckpt = time.monotonic()
            if cfg.max_wall_s and time.monotonic() - started > cfg.max_wall_s:
                for c in callbacks:
                    c.on_message(f"[{cfg.name()}] stopping at max_wall_s={cfg.max_wall_s}")
                break
        wall_s = wall_before + time.monotonic() - started
        _checkpoint(algo, algo_dir, state, state_file, book, iteration, wall_s)
        episodes = book.episodes[:cfg.episodes]
        _write_curve(run_dir, episodes, scen, cfg)
        result = {"scenario": scenario, "algo": cfg.algo, "episodes": len(book.episodes),
                  "wall_s": round(wall_s, 2), "checkpoint": str(algo_dir), "iterations": iteration}
        last = episodes[-10:]
        if last and scen.scenario == "dedgeai":
            result["final_mean_delay_s"] = float(np.nanmean([e.get("mean_delay_s", np.nan) for e in last]))
        elif last:
            result["final_mean_reward"] = float(np.nanmean([e.get("mean_reward", np.nan) for e in last]))
        if resumed_from is not None:
            result["resumed_from_episode"] = resumed_from
            result["resumed_at"] = state["resumed_at"]
        if ours:
            result["policy"] = str(export_policy(algo, run_dir / "policy", scen, cfg))
        for c in callbacks:
            c.on_end(result, run_dir)
        _write_atomically(state_file, json.dumps(state))          # what the callbacks kept, for a resume
    except BaseException as error:
        for c in callbacks:
            c.on_failure(error)
        raise
    finally:
        algo.stop()
    return result


def initialise_from(algo, source: str, scen) -> None:
    """Load a source policy's weights (actor and critics) into a freshly built algorithm, and LAD's
    store with them; optimiser state and replay start afresh. The spaces must match (transfer
    between families of one scenario)."""
    from envs.config import ConfigError
    from policies.artifact import SPEC_FILE, check_spec, source_module_dir

    try:
        module_dir, artifact = source_module_dir(source)
    except ConfigError as e:
        raise ConfigError(f"init_from: {e}") from e
    if artifact is not None:
        check_spec(json.loads((artifact / SPEC_FILE).read_text()), scen, transfer=True)
    algo.restore_from_path(str(module_dir), component="learner_group/learner/rl_module/default_policy")
    store_file = None if artifact is None else artifact / "lad_store.npy"
    if store_file is not None and store_file.is_file():
        store = np.load(store_file)
        algo.env_runner_group.foreach_env_runner(lambda r: r.set_state({"lad_store": store}),
                                                 local_env_runner=True)


def _progress(cfg: TrainConfig, book, algo, result: dict, iteration: int, expected: float,
              elapsed_s: float) -> TrainProgress:
    decisions = algo.decisions if book.ours else _get(result, ("env_runners", "num_env_steps_sampled_lifetime"))
    recent = book.episodes[-10:]
    delays = [e["mean_delay_s"] for e in recent if "mean_delay_s" in e]
    rewards = [e["mean_reward"] for e in recent if "mean_reward" in e]
    last10 = float(np.mean(delays)) if delays else (float(np.mean(rewards)) if rewards else None)
    return TrainProgress(iteration=iteration, episodes=len(book.episodes), episodes_total=cfg.episodes,
                         decisions=int(decisions or 0), decisions_expected=expected, elapsed_s=elapsed_s,
                         last10=last10, last10_is_delay=bool(delays))


def _checkpoint(algo, algo_dir: Path, state: dict, state_file: Path, book,
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
    _write_atomically(state_file, json.dumps(state))
    _write_episodes_csv(state_file.parent / "episodes.csv", book.episodes)


def _write_atomically(path: Path, text: str) -> None:
    """Beside, then renamed over: a kill never leaves half a run state."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


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
