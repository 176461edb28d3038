"""The agents benchmark's jobs as data, run as one Ray Tune stage.

`tuning/experiments/agents.yaml` lists the jobs of `benchmarks/agents/run.py` in job groups
(`AgentsBenchmark`): each group is seeds x algos over shared settings (`bases`), and
`AgentsBenchmark.jobs(seeds)` expands it into the job dicts the benchmark runs, in priority order:

    {"group": ..., "name": ..., ["label": ...,] "cfg": {scenario, [scenario_overrides,] algo, seed,
     [training,] [model,] [num_envs]}, ["episodes": ...]}

`cfg` plus `episodes` and the run name is the job's `TrainConfig` (`validate_jobs`).

`run_jobs` runs a job list on Tune: an explicit grid over the jobs (one trial per job, no cross
product), `max_concurrent_trials` at a time, each trial reserving `cpus_per_job` CPUs (may be a
fraction: the job's env is stepped in the trial process, no env-runner actors). A trial calls the
benchmark's per-job function (`runner`, "FILE.py:FUNCTION", loaded by path in the trial process),
which trains, pairs and saves the run's JSON, and returns at once when that JSON exists. An
interrupted job resumes from its own RLlib checkpoint whichever way it is started again. With
`resume` and a Tune state of the same job list (`<storage>/jobs-<digest>`), the Tuner is restored
(`Tuner.restore(..., resume_unfinished=True)`): finished and failed trials are not rerun.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, field_validator, model_validator

from envs.config import ConfigError, StrictModel, read_yaml, validate
from policies.registry import ALGO_NAMES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AGENTS_FILE = Path(__file__).resolve().parent / "experiments" / "agents.yaml"
AGENTS_RUNNER = f"{PROJECT_ROOT / 'benchmarks' / 'agents' / 'run.py'}:run_saved"
SEED_SETS = ("all", "first", "rest")


class JobSettings(StrictModel):
    """Settings a job group takes from its bases and gives itself; unset fields are left out of
    the job (so TrainConfig's defaults apply)."""
    group: str | None = Field(None, min_length=1, description="results table / plot panel of the job")
    scenario: str | None = Field(None, min_length=1, description="preset name or YAML path")
    scenario_overrides: list[str] | None = Field(None, description="the scenario's dotted key=value overrides")
    num_envs: int | None = Field(None, ge=1, le=4096, description="vectorised copies")
    episodes: int | None = Field(None, ge=1, description="episodes of this job (default: --episodes)")
    training: dict[str, Any] | None = Field(None, description="the algorithm's options (policies/options.py)")
    model: dict[str, Any] | None = Field(None, description="network options (policies/options.py)")


class JobGroup(JobSettings):
    """Jobs seeds x algos (seed outer, algo inner), named from templates with {algo} and {seed}."""
    base: list[str] = Field(default_factory=list, description="bases merged left to right, then these settings")
    name: str = Field(min_length=1, description="job name template: {algo}, {seed}")
    label: str | None = Field(None, min_length=1, description="the algo column's label template (default: the algo)")
    algos: list[Literal[ALGO_NAMES]] = Field(min_length=1, description=" | ".join(ALGO_NAMES))
    seeds: Literal[SEED_SETS] | list[int] = Field("all", description="all | first | rest of --seeds, or "
                                                               "those of --seeds in this list")

    @field_validator("base", mode="before")
    @classmethod
    def _listed(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _templates(self) -> "JobGroup":
        for key in ("name", "label"):
            template = getattr(self, key)
            if template is None:
                continue
            try:
                template.format(algo="a", seed=0)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"{key} {template!r}: only {{algo}} and {{seed}} may be filled in ({exc})") from exc
        if "{seed}" not in self.name:
            raise ValueError(f"name {self.name!r} must contain {{seed}} (one job per seed)")
        if len(self.algos) > 1 and "{algo}" not in self.name:
            raise ValueError(f"name {self.name!r} must contain {{algo}}: the group has algos {self.algos}")
        return self

    def seeds_of(self, seeds: list[int]) -> list[int]:
        if self.seeds == "all":
            return list(seeds)
        if self.seeds == "first":
            return list(seeds[:1])
        if self.seeds == "rest":
            return list(seeds[1:])
        return [s for s in seeds if s in self.seeds]


class AgentsBenchmark(StrictModel):
    """tuning/experiments/agents.yaml: the benchmark's job groups and how many run at once."""
    episodes: int = Field(60, ge=1, description="episodes of every job (default of --episodes)")
    cpus_per_job: float = Field(1.0, gt=0.0, le=64.0, description="CPUs Tune reserves per job (fractions allowed)")
    max_concurrent_jobs: int = Field(2, ge=1, le=1024, description="jobs at once (2 on a 2-core machine)")
    bases: dict[str, JobSettings] = Field(default_factory=dict, description="named settings job groups start from")
    jobs: list[JobGroup] = Field(min_length=1, description="job groups, in priority order")

    @model_validator(mode="after")
    def _complete(self) -> "AgentsBenchmark":
        for i, group in enumerate(self.jobs):
            unknown = [b for b in group.base if b not in self.bases]
            if unknown:
                raise ValueError(f"jobs[{i}] ({group.name}): unknown base {unknown}; bases: {sorted(self.bases)}")
            settings = self.settings(group)
            missing = [k for k in ("group", "scenario") if settings.get(k) is None]
            if missing:
                raise ValueError(f"jobs[{i}] ({group.name}): no {' or '.join(missing)} (neither set nor from a base)")
        return self

    def settings(self, group: JobGroup) -> dict:
        """The group's settings: its bases merged left to right, then its own."""
        merged: dict = {}
        for part in [self.bases[b] for b in group.base] + [group]:
            for key in JobSettings.model_fields:
                value = getattr(part, key)
                if value is None:
                    continue
                if key in ("training", "model"):
                    merged[key] = _deep_merge(merged.get(key, {}), value)
                else:
                    merged[key] = copy.deepcopy(value)
        return merged

    def jobs_of(self, seeds: list[int]) -> list[dict]:
        """Every job for these seeds, in priority order; names are unique."""
        out: list[dict] = []
        for group in self.jobs:
            s = self.settings(group)
            for seed in group.seeds_of(seeds):
                for algo in group.algos:
                    cfg: dict = {"scenario": s["scenario"]}
                    if "scenario_overrides" in s:
                        cfg["scenario_overrides"] = list(s["scenario_overrides"])
                    cfg.update(algo=algo, seed=seed)
                    for key in ("training", "model", "num_envs"):
                        if key in s:
                            cfg[key] = copy.deepcopy(s[key])
                    job: dict = {"group": s["group"], "name": group.name.format(algo=algo, seed=seed)}
                    if group.label is not None:
                        job["label"] = group.label.format(algo=algo, seed=seed)
                    job["cfg"] = cfg
                    if "episodes" in s:
                        job["episodes"] = s["episodes"]
                    out.append(job)
        seen: set[str] = set()
        twice = [j["name"] for j in out if j["name"] in seen or seen.add(j["name"])]
        if twice:
            raise ConfigError(f"job names must be unique; given more than once: {sorted(set(twice))}")
        return out


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_benchmark(path: str | Path = AGENTS_FILE) -> AgentsBenchmark:
    return validate(AgentsBenchmark, read_yaml(path), str(path))


def train_config(job: dict, episodes: int):
    """The TrainConfig a job trains with (as benchmarks/agents/run.py `run_job` builds it)."""
    from policies.training import TrainConfig

    return TrainConfig(**job["cfg"], episodes=job.get("episodes", episodes), run_name=f"bench-{job['name']}",
                       register_policy=False)


def validate_jobs(jobs: list[dict], episodes: int) -> None:
    """Every job's TrainConfig validates (a misspelt option is refused before Ray starts)."""
    from pydantic import ValidationError

    for job in jobs:
        try:
            train_config(job, episodes)
        except (ValidationError, ConfigError, ValueError) as exc:
            raise ConfigError(f"job {job['name']}: {exc}") from exc


# -- the Tune stage --------------------------------------------------------------------------------

@dataclass
class JobsOutcome:
    path: Path | None            # the Tune experiment's folder (None: nothing was left to run)
    trials: int = 0              # jobs the Tune experiment holds
    restored: bool = False
    failed: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)     # neither finished nor failed (Ctrl-C)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unfinished


def stage_name(jobs: list[dict], runner_kwargs: dict) -> str:
    """The Tune experiment's folder name: a digest of exactly what it runs, so `--resume` restores
    only the experiment of the same job list (Tune cannot change a restored experiment's trials)."""
    text = json.dumps({"jobs": jobs, "runner_kwargs": runner_kwargs}, sort_keys=True, default=str)
    return "jobs-" + hashlib.sha1(text.encode()).hexdigest()[:10]


_RUNNERS: dict[str, Callable] = {}


def load_runner(spec: str) -> Callable:
    """"path/to/file.py:function" (loaded by path) or "package.module:function"."""
    if spec not in _RUNNERS:
        where, _, name = spec.rpartition(":")
        if not where or not name:
            raise ConfigError(f"runner {spec!r} must look like FILE.py:FUNCTION or MODULE:FUNCTION")
        if where.endswith(".py"):
            module_name = "_jobs_runner_" + hashlib.sha1(where.encode()).hexdigest()[:8]
            loader = importlib.util.spec_from_file_location(module_name, where)
            if loader is None:
                raise ConfigError(f"runner {spec!r}: no such file")
            module = importlib.util.module_from_spec(loader)
            sys.modules[module_name] = module
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        _RUNNERS[spec] = getattr(module, name)
    return _RUNNERS[spec]


def run_job_trial(config: dict, runner: str, runner_kwargs: dict, home: str, tracking_uri: str) -> None:
    """The Tune function trainable: one job. `runner(job, **runner_kwargs)` returns a dict
    (`skipped` when the run was saved before); it is reported once, when the job ends."""
    os.environ["AIGC_EDGE_HOME"] = home                  # the trial's process: absolute, set here
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from ray import tune

    job = config.get("trial", config)
    started = time.time()
    outcome = load_runner(runner)(job, **runner_kwargs) or {}
    if tune.get_context().get_trial_id():
        tune.report({"job": job["name"], "skipped": bool(outcome.get("skipped")),
                     "trial_wall_s": time.time() - started,
                     **{k: v for k, v in outcome.items() if isinstance(v, (int, float, str, bool))}})


def _trial_name(trial) -> str:
    return trial.config["trial"]["name"]


def _trial_dirname(trial) -> str:
    return f"{trial.config['trial']['name']}_{trial.trial_id}"


_ON_RESULT: Callable[[dict, dict], None] | None = None     # the driver's hook while run_jobs runs


def _on_result_hook() -> Callable[[dict, dict], None] | None:
    # Looked up in the module at event time: a callback restored from tuner.pkl calls the hook
    # of the run_jobs now running, not one pickled with it.
    return importlib.import_module("tuning.jobs")._ON_RESULT


def _events():
    """A Tune callback (driver side): one line per job started / ended, and the on_result hook."""
    from ray.tune import Callback

    class JobEvents(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            print(f"== {_trial_name(trial)}", file=sys.stderr, flush=True)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            job = trial.config["trial"]
            if result.get("skipped"):
                print(f"-- {job['name']}: saved before, skipped", file=sys.stderr, flush=True)
            hook = _on_result_hook()
            if hook is not None:
                try:
                    hook(job, dict(result))
                except Exception as exc:  # noqa: BLE001 - a report must not stop the other jobs
                    print(f"!! {job['name']}: on_result failed: {type(exc).__name__}: {exc}",
                          file=sys.stderr, flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            where = getattr(trial, "path", None) or trial.local_path
            print(f"!! {_trial_name(trial)} failed: see {where}", file=sys.stderr, flush=True)

    return JobEvents()


def run_jobs(jobs: list[dict], storage: str | Path, resume: bool,
             on_result: Callable[[dict, dict], None] | None = None, *,
             skip: Callable[[dict], bool] | None = None, runner: str = AGENTS_RUNNER,
             runner_kwargs: dict | None = None, cpus_per_job: float = 1.0,
             max_concurrent_trials: int = 2) -> JobsOutcome:
    """Run `jobs` as one Tune stage under `storage` (Ray must be connected: cluster.connect).

    `on_result(job, metrics)` is called in the driver when a job's trial ends (`metrics["skipped"]`
    when its run had been saved before). A new stage leaves out the jobs `skip` names (already
    done); `resume` restores the stage of the same jobs if its Tune state exists."""
    import ray
    from ray import tune

    from policies.tracking import EXPERIMENT_TRAIN, ensure_experiment, home, tracking_uri

    global _ON_RESULT
    if not ray.is_initialized():
        raise RuntimeError("run_jobs: connect to Ray first (cluster.connect.connect)")
    runner_kwargs = dict(runner_kwargs or {})
    path = Path(storage).expanduser().resolve() / stage_name(jobs, runner_kwargs)
    trainable = tune.with_resources(
        tune.with_parameters(run_job_trial, runner=runner, runner_kwargs=runner_kwargs, home=str(home()),
                             tracking_uri=tracking_uri()),
        {"cpu": cpus_per_job})
    restored = bool(resume and tune.Tuner.can_restore(str(path)))
    if restored:
        print(f"[jobs] resuming the Tune experiment at {path}", file=sys.stderr, flush=True)
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True)
    else:
        todo = [j for j in jobs if not (skip and skip(j))]
        print(f"[jobs] {len(jobs) - len(todo)} of {len(jobs)} jobs done before; {len(todo)} to run, "
              f"{max_concurrent_trials} at a time, {cpus_per_job:g} CPU each", file=sys.stderr, flush=True)
        if not todo:
            return JobsOutcome(None)
        if path.exists():
            shutil.rmtree(path)
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(todo)},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent_trials,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=path.name, storage_path=str(path.parent), verbose=0,
                                      callbacks=[_events()]))
    # The trials record in MLflow at once: create its store (and experiment) here, not in two
    # trials racing to create the same SQLite schema.
    ensure_experiment(EXPERIMENT_TRAIN)
    _ON_RESULT = on_result
    try:
        grid = tuner.fit()
    finally:
        _ON_RESULT = None
    outcome = JobsOutcome(path, len(grid), restored)
    for result in grid:
        name = (result.config or {}).get("trial", {}).get("name", str(result.path))
        if result.error is not None:
            outcome.failed.append(name)
        elif not (result.metrics or {}).get("job"):
            outcome.unfinished.append(name)
    return outcome
