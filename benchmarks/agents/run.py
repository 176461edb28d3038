"""The agents benchmark: LAD-TS reproduction on dedgeai and the collab-exit comparison.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/agents/run.py [--only SUBSTRING ...] [--seeds 0 1 2] [--resume]

The jobs are data: `tuning/experiments/agents.yaml` (job groups over scenario, overrides, algos,
training and model options, seeds; tuning/jobs.py validates and expands them, in priority order).
They run as one Ray Tune stage (tuning/jobs.py `run_jobs`): one trial per job, `max_concurrent_jobs`
at a time with `cpus_per_job` CPUs each (agents.yaml; `--max-concurrent`, `--cpus-per-job`), each
with `policies.training.train` (the library behind `aigc-edge train`) in the trial process. Every
finished run is saved at once to `benchmarks/results/agents/runs/<job>.json` and skipped next time
(a failed one leaves `<job>.error`, skipped too until it is deleted); an interrupted run resumes
from its RLlib checkpoint. `--resume` restores the Tune experiment of the same job list
(`$AIGC_EDGE_HOME/experiments/agents-benchmark/tune/`): finished and failed trials are not rerun.
After every run the results table (`benchmarks/results/agents/results.md`) and the learning curves
(`benchmarks/results/agents/learning_curves.png`, greedy, random and on dedgeai the state-free
capacity-proportional rule on the same scenario as reference lines; on dedgeai also
`paired_ratio_curves.png`, each run per 10 episodes against greedy on the same episodes) are
rewritten from all saved runs, and once more after the stage.

Metric (as the issue defines it): mean per-task delay of each training episode (every simulated
episode counts, across the vectorised copies), mean of the last 10 of 60 episodes, then mean and
spread over seeds. Our agents' final policies are also evaluated on 5 fresh episodes (by argmax
and by sampling), and greedy is run on exactly each run's episodes (the paired reference).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from policies.reference_rules import CapacityProportional  # noqa: E402
from tuning.jobs import load_benchmark, run_jobs, train_config, validate_jobs  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "agents"
RUNS = OUT / "runs"
FAITHFUL_GROUP = "dedgeai faithful (20 agents)"


def jobs(seeds: list[int]) -> list[dict]:
    """Jobs in priority order: what the issue must show first, extra seeds last. They are data:
    tuning/experiments/agents.yaml, expanded by tuning/jobs.py."""
    return load_benchmark().jobs_of(seeds)


def tune_state() -> Path:
    """Where the Tune experiments of this benchmark keep their state (absolute, run state)."""
    from policies.tracking import home
    return home() / "experiments" / "agents-benchmark" / "tune"


def run_job(job: dict, episodes: int) -> dict:
    from cluster.output import TrainingProgressBar
    from envs.scenarios import load_scenario
    from policies.registry import algorithm
    from policies.tracking import MlflowTrainingRecorder
    from policies.training import train

    cfg = train_config(job, episodes)
    from policies.tracking import checkpoints_dir
    resume = (checkpoints_dir() / cfg.name() / "algo").is_dir()
    t0 = time.time()
    result = train(cfg, resume=resume, callbacks=[TrainingProgressBar(), MlflowTrainingRecorder()])
    result["job"], result["group"] = job["name"], job["group"]
    result["algo"], result["seed"] = job.get("label", cfg.algo), cfg.seed
    run_dir = checkpoints_dir() / cfg.name()
    result["episodes_log"] = _read_episodes(run_dir / "episodes.csv")
    result["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    result["job_wall_s"] = time.time() - t0
    result.update(paired_greedy(job["cfg"], result["episodes_log"], result.get("resumed_at")))
    if algorithm(cfg.algo).ours:
        from policies.artifact import load_policy
        from policies.evaluation import evaluate
        scen = load_scenario(cfg.scenario, cfg.scenario_overrides)
        ev = evaluate(scen, load_policy(result["policy"], scen), episodes=5, seed=10_000 + cfg.seed)
        result["greedy_eval"] = {k: ev.get(k) for k in ("mean_delay_s", "mean_reward", "episodes")}
        ev = evaluate(scen, load_policy(result["policy"], scen, sample=True, seed=cfg.seed),
                      episodes=5, seed=10_000 + cfg.seed)
        result["sampled_eval"] = {k: ev.get(k) for k in ("mean_delay_s", "mean_reward", "episodes")}
    return result


def _saved(job: dict, runs: Path = RUNS) -> bool:
    """A job is done when its run is saved, or it failed (delete `<job>.error` to run it again)."""
    return (runs / f"{job['name']}.json").is_file() or (runs / f"{job['name']}.error").is_file()


def run_saved(job: dict, episodes: int, runs: str | None = None) -> dict:
    """One job, as a Tune trial runs it (tuning/jobs.py): train + pairing, the run's JSON saved to
    `<runs>/<job>.json`; nothing is done when that JSON exists. A failure leaves `<job>.error`
    (the traceback) and is raised again, so Tune marks the trial failed."""
    runs_dir = Path(runs) if runs else RUNS
    runs_dir.mkdir(parents=True, exist_ok=True)
    done = runs_dir / f"{job['name']}.json"
    if done.is_file():
        return {"skipped": True}
    try:
        result = run_job(job, episodes)
    except Exception:
        (runs_dir / f"{job['name']}.error").write_text(traceback.format_exc())
        raise
    tmp = done.with_name(done.name + ".tmp")       # never a half-written JSON, even when killed
    tmp.write_text(json.dumps(result, default=float))
    tmp.rename(done)
    return {"skipped": False, "wall_s": float(result.get("job_wall_s", 0.0))}


def _record(job: dict, metrics: dict) -> None:
    """After a job's run was saved (in the driver): its group's heuristic references, the table, the plots."""
    if metrics.get("skipped"):
        return
    cache_path = OUT / "heuristics_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    cache[job["group"]] = heuristic_reference(job["cfg"]["scenario"], job["cfg"].get("scenario_overrides", []), cache)
    cache_path.write_text(json.dumps(cache, indent=1))
    summarise()


PAIRING = "replayed"     # how `greedy_same_episodes` was made; runs paired otherwise are redone


def paired_greedy(job_cfg: dict, episodes_log: list[dict], resumed_at: list[int] | None = None) -> dict:
    """Greedy on exactly the episodes a dedgeai run played, in the run's numbering, with the
    evidence that they are those episodes (`pairing_check`): our runs' are replayed as their
    runner stepped the core, RLlib's as its env runner stepped its envs (policies/evaluation.py)."""
    if not job_cfg["scenario"].startswith("dedgeai") or not episodes_log:
        return {}
    from policies.registry import algorithm
    from policies.training import TrainConfig

    num_envs = job_cfg.get("num_envs", TrainConfig.model_fields["num_envs"].default)
    rllib = not algorithm(job_cfg["algo"]).ours
    # Our runners continue their episodes on a resume; RLlib's restart their envs' streams.
    restarts = tuple(resumed_at or ()) if rllib else ()
    paired = _greedy_on(job_cfg["scenario"], tuple(job_cfg.get("scenario_overrides", [])), job_cfg["seed"],
                        num_envs, len(episodes_log), rllib, restarts)
    return {"greedy_same_episodes": paired, "greedy_pairing": PAIRING, "paired_as": "rllib" if rllib else "runner",
            "pairing_check": pairing_check(episodes_log, paired)}


@functools.lru_cache(maxsize=None)     # the algorithms of one seed share their episodes
def _greedy_on(scenario: str, overrides: tuple[str, ...], seed: int, num_envs: int, episodes: int,
               rllib: bool, resumed_at: tuple[int, ...]) -> list[dict]:
    from envs.scenarios import load_scenario
    from policies.catalog import make_policy
    from policies.evaluation import on_rllib_run_episodes, on_runner_episodes
    from policies.sac.runner import uses_agents

    scen = load_scenario(scenario, overrides)
    greedy = make_policy("greedy", scen)
    if rllib:
        return on_rllib_run_episodes(scen, greedy, seed, num_envs, episodes, shared_form=not uses_agents(scen),
                                     resumed_at=resumed_at)
    return on_runner_episodes(scen, greedy, seed, num_envs, episodes)


def pair_finished_runs(seeds: list[int]) -> None:
    """(Re)make the paired greedy figures of finished dedgeai runs made before they were replayed
    exactly (earlier, corrected-mode runs were compared with `evaluate`'s episodes of the same
    seed, which are other episodes there)."""
    by_name = {job["name"]: job for job in jobs(seeds)}
    for path in sorted(RUNS.glob("*.json")):
        run = json.loads(path.read_text())
        job = by_name.get(run.get("job"))
        if job is None or run.get("greedy_pairing") == PAIRING:
            continue
        extra = paired_greedy(job["cfg"], run["episodes_log"], run.get("resumed_at"))
        if not extra:
            continue
        old = run.get("greedy_same_episodes")
        if old:
            extra["pairing_check"]["before_replay_last10"] = float(np.mean([e["mean_delay_s"] for e in old[:60][-10:]]))
        run.update(extra)
        path.write_text(json.dumps(run, default=float))
        print(f"[{run['job']}] paired: {run['pairing_check']}", flush=True)


def report_unfinished(name: str, seeds: list[int]) -> int:
    """Per 10 episodes, an unfinished run (its last checkpoint) against greedy on the same episodes."""
    from policies.tracking import checkpoints_dir
    by_name = {job["name"]: job for job in jobs(seeds)}
    if name not in by_name:
        print(f"--unfinished: no job {name!r}; jobs: {', '.join(by_name)}", file=sys.stderr)
        return 2
    state_file = checkpoints_dir() / f"bench-{name}" / "run.json"
    if not state_file.is_file():
        print(f"--unfinished: {name} has no checkpoint ({state_file})", file=sys.stderr)
        return 2
    state = json.loads(state_file.read_text())
    episodes = state["episodes"]
    extra = paired_greedy(by_name[name]["cfg"], episodes, state.get("resumed_at"))
    print(f"{name}: {len(episodes)} episodes, resumed at {state.get('resumed_at', [])}, {extra['pairing_check']}")
    for start, run, greedy in per_block_delays(episodes, extra["greedy_same_episodes"]):
        print(f"episodes {start + 1}-{start + 10}: {run:.2f} s, greedy {greedy:.2f} s, {run / greedy:.3f}x")
    return 0


def per_block_delays(episodes: list[dict], greedy: list[dict], block: int = 10) -> list[tuple[int, float, float]]:
    """(first episode index, the run's mean delay, greedy's on the same episodes) per block."""
    return [(start, float(np.mean([e["mean_delay_s"] for e in episodes[start:start + block]])),
             float(np.mean([g["mean_delay_s"] for g in greedy[start:start + block]])))
            for start in range(0, len(episodes), block)]


def pairing_check(episodes: list[dict], paired: list[dict]) -> dict:
    """Evidence that `paired` are the run's episodes: the decisions of each (an episode's task
    count) where the run recorded them, and how the run's per-episode delay correlates with
    greedy's (episode load dominates both; shifted by one episode as the control)."""
    run = np.array([e["mean_delay_s"] for e in episodes])
    greedy = np.array([p["mean_delay_s"] for p in paired])
    check = {"delay_correlation": float(np.corrcoef(run, greedy)[0, 1]),
             "shifted_by_one": float(np.corrcoef(run[1:], greedy[:-1])[0, 1])}
    # Runs made before decisions were recorded have them only from a resume on.
    recorded = [(e["decisions"], p["decisions"]) for e, p in zip(episodes, paired) if e.get("decisions") is not None]
    if recorded:
        check["decisions_match"] = all(run_d == paired_d for run_d, paired_d in recorded)
        check["decisions_checked"] = len(recorded)
    return check


def _read_episodes(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = path.read_text().strip().splitlines()
    keys = lines[0].split(",")
    return [{k: float(v) for k, v in zip(keys, line.split(",")) if v != ""} for line in lines[1:]]


STATE_FREE = CapacityProportional.name     # the reference line drawn on dedgeai panels


def heuristic_reference(scenario: str, overrides: list[str], cache: dict) -> dict:
    """Every heuristic (and on dedgeai the state-free capacity-proportional rule) on 10
    episodes, cached in OUT."""
    from policies.evaluation import evaluate
    from envs.scenarios import load_scenario
    key = scenario + "|" + ",".join(overrides)
    scen = load_scenario(scenario, overrides)
    dedgeai = scen.scenario == "dedgeai"
    if key in cache and (STATE_FREE in cache[key] or not dedgeai):
        return cache[key]
    policies = ["greedy", "random", "least-loaded", "round-robin", "local"]
    if dedgeai:
        policies.append(CapacityProportional(scen, seed=0))
    ref = {}
    for policy in policies:
        name = getattr(policy, "name", policy)
        try:
            ev = evaluate(scen, policy, episodes=10, seed=123)
        except Exception as exc:  # noqa: BLE001 - a heuristic may not apply to a scenario
            ref[name] = {"error": str(exc)}
            continue
        ref[name] = {"mean_delay_s": ev["mean_delay_s"], "mean_reward": ev["mean_reward"]}
    cache[key] = ref
    (OUT / "heuristics_cache.json").write_text(json.dumps(cache, indent=1))
    return ref


def refresh_references(seeds: list[int]) -> None:
    """Fill in reference figures added since a group's cache entry was written."""
    cache_path = OUT / "heuristics_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    for job in jobs(seeds):
        if job["group"] in cache:
            cfg = job["cfg"]
            cache[job["group"]] = heuristic_reference(cfg["scenario"], cfg.get("scenario_overrides", []), cache)
    cache_path.write_text(json.dumps(cache, indent=1))


def summarise() -> None:
    runs = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))]
    if not runs:
        return
    for r in runs:   # runs made before the runner logged mean_reward: derive it
        for e in r["episodes_log"]:
            if "mean_reward" not in e and e.get("decisions"):
                e["mean_reward"] = e["return"] / e["decisions"]
        if "collab" in r["group"] and r["episodes_log"]:
            r["final_mean_reward"] = float(np.mean([e["mean_reward"] for e in r["episodes_log"][:60][-10:]]))
    groups: dict[str, dict[str, list[dict]]] = {}
    for r in runs:
        groups.setdefault(r["group"], {}).setdefault(r["algo"], []).append(r)
    lines = ["# Agents benchmark (generated by benchmarks/agents/run.py)", "",
             "Metric: mean per-task delay (s) of the training episodes, mean of the last 10 of 60 "
             "episodes (every simulated episode across the vectorised copies counts); mean +- std "
             "over the seeds that ran. `argmax eval` / `sampled eval`: the final policy acting by argmax / by sampling on 5 fresh "
             "episodes. collab-exit reports mean reward per decision (higher is better). "
             "`last-30`: mean of episodes 31-60. Our agents (lad, d2sac, sac-mlp) start exactly 60 "
             "episodes and number them in the order they START (numbering by finish order would put "
             "the most loaded episodes of each round of B copies last and bias the last-10 figure "
             "upwards); RLlib's stock ppo/dqn/sac are numbered as RLlib reports them (finish order). "
             "`greedy, same episodes`: the greedy heuristic on exactly the run's episodes 51-60 (the "
             "simulator stepped as the run's env runner stepped it: ours, or RLlib's lockstep envs with "
             "next-step resets; which tasks arrive does not depend on the policy; evidence in "
             "`pairing_check` of each run's JSON); "
             "episodes differ a lot in load (greedy's per-episode delay spans ~6-9 s), so this paired "
             "figure, not the 10-episode heuristic line, says whether an agent beats greedy.", ""]
    cache_path = OUT / "heuristics_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    for group, algos in groups.items():
        delay = "collab" not in group
        metric = "final_mean_delay_s" if delay else "final_mean_reward"
        key = "mean_delay_s" if delay else "mean_reward"
        lines += [f"## {group}", "",
                  "| algo | seeds | last-10 " + ("delay (s)" if delay else "reward") +
                  " | greedy, same episodes | ratio | per seed | last-30 | argmax eval | sampled eval | wall per run (s) |",
                  "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
        for algo, rs in sorted(algos.items(), key=lambda kv: np.mean([r.get(metric, np.nan) for r in kv[1]])
                               * (1 if delay else -1)):
            vals = [r.get(metric, np.nan) for r in rs]
            ge = [r.get("greedy_eval", {}).get(key) for r in rs]
            ge = [g for g in ge if g is not None]
            se = [r.get("sampled_eval", {}).get(key) for r in rs]
            se = [g for g in se if g is not None]
            last30 = [np.nanmean([e.get(key, np.nan) for e in r["episodes_log"][:60][-30:]]) for r in rs]
            paired = [np.mean([e[key] for e in r["greedy_same_episodes"][:60][-10:]])
                      for r in rs if r.get("greedy_same_episodes")]
            same = (f"{np.mean(paired):.3f} | {np.mean(vals) / np.mean(paired):.3f}x"
                    if len(paired) == len(rs) else "- | -")
            lines.append(f"| {algo} | {len(rs)} | {np.mean(vals):.3f} +- {np.std(vals):.3f} | {same} | "
                         + ", ".join(f"{v:.2f}" for v in vals) + f" | {np.mean(last30):.3f} | "
                         + (f"{np.mean(ge):.3f}" if ge else "-") + " | "
                         + (f"{np.mean(se):.3f}" if se else "-") + " | "
                         + f"{np.mean([r['wall_s'] for r in rs]):.0f} |")
        ref = cache.get(group)
        if ref:
            lines.append("")
            lines.append("Heuristics, same scenario (10 episodes): " + ", ".join(
                f"{k} {v.get('mean_delay_s' if delay else 'mean_reward', float('nan')):.3f}"
                for k, v in ref.items() if "error" not in v))
        lines.append("")
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    _plot(groups, cache)
    _plot_paired_ratios({g: algos for g, algos in groups.items() if "collab" not in g})
    if FAITHFUL_GROUP in groups:
        _plot_paper_agents(groups[FAITHFUL_GROUP], cache.get(FAITHFUL_GROUP, {}))


def _panels(n: int, height: float = 4.0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes.flat[:n]:
        # Some panels have over 10 variants: tab10 would give two of them one colour.
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    return fig, axes.flat[:n]


def _plot(groups: dict, cache: dict) -> None:
    import matplotlib.pyplot as plt

    fig, axes = _panels(len(groups), height=6.5)
    for ax, (group, algos) in zip(axes, groups.items()):
        delay = "collab" not in group
        key = "mean_delay_s" if delay else "mean_reward"
        for algo, rs in sorted(algos.items()):
            curves = [[e.get(key, np.nan) for e in r["episodes_log"]][:60] for r in rs]
            length = min(len(c) for c in curves)
            if length == 0:
                continue
            arr = np.array([c[:length] for c in curves])
            x = np.arange(1, length + 1)
            line, = ax.plot(x, arr.mean(0), label=f"{algo} ({len(rs)} seed{'s' if len(rs) > 1 else ''})")
            if len(rs) > 1:
                ax.fill_between(x, arr.min(0), arr.max(0), alpha=0.15, color=line.get_color())
        ref = cache.get(group, {})
        paired = _paired_greedy_curve(algos, key)
        if paired is not None:
            ax.plot(np.arange(1, paired.size + 1), paired, c="k", lw=0.9, ls="--",
                    label="greedy, same episodes")
        for name, style in (("greedy", dict(ls="--", c="k")), ("random", dict(ls=":", c="gray")),
                            (STATE_FREE, dict(ls="-.", c="gray"))):
            value = ref.get(name, {}).get(key)
            if value is not None and not (name == "greedy" and paired is not None):
                ax.axhline(value, lw=0.8, label=f"{name} {value:.2f}", **style)
        if delay and ax.get_ylim()[1] > 40:          # one diverging baseline: keep the rest readable
            ax.set_yscale("log")
        ax.set_title(group)
        ax.set_xlabel("training episode")
        ax.set_ylabel("mean per-task delay (s)" if delay else "mean reward per decision")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    fig.savefig(OUT / "learning_curves.png", dpi=110)
    plt.close(fig)


# The agents of the paper's ordering (LAD < D2SAC < SAC, DQN) as the faithful table labels them,
# and our SAC with an MLP actor (same learner and schedule as LAD/D2SAC): the like-for-like SAC.
PAPER_AGENTS = {"lad": ("LAD (ours)", "tab:blue"), "d2sac": ("D2SAC (ours)", "tab:green"),
                "sac (target entropy 0.65 log 20) (RLlib, 20 policies)": ("SAC (RLlib)", "tab:red"),
                "dqn (RLlib, 20 policies)": ("DQN (RLlib)", "tab:orange"),
                "sac-mlp": ("SAC, MLP actor (ours)", "tab:purple")}


def _plot_paper_agents(algos: dict, ref: dict, block: int = 10) -> None:
    """The issue's figure: the paper's agents in the faithful form, with greedy and random as
    reference lines; beside it the same runs per 10 episodes against greedy on their own
    episodes (episode load, which dominates the left panel, cancels out there)."""
    import matplotlib.pyplot as plt

    fig, (curves, ratios) = _panels(2, height=4.6)
    for label, (name, colour) in PAPER_AGENTS.items():
        rs = algos.get(label, [])
        if not rs:
            continue
        seeds = f"{len(rs)} seed{'s' if len(rs) > 1 else ''}"
        style = dict(ls="--", color=colour) if label == "sac-mlp" else dict(color=colour)
        delays = np.array([[e["mean_delay_s"] for e in r["episodes_log"][:60]] for r in rs])
        x = np.arange(1, delays.shape[1] + 1)
        curves.plot(x, delays.mean(0), lw=1.2, label=f"{name}, {seeds}", **style)
        paired = [r for r in rs if r.get("greedy_same_episodes")]
        if paired:
            blocks = np.array([[run / greedy for _, run, greedy in
                                per_block_delays(r["episodes_log"][:60], r["greedy_same_episodes"], block)]
                               for r in paired])
            bx = np.arange(block, 61, block)
            ratios.plot(bx, blocks.mean(0), marker="o", ms=3, label=f"{name}, {seeds}", **style)
            if len(paired) > 1:
                ratios.fill_between(bx, blocks.min(0), blocks.max(0), alpha=0.12, color=colour)
    for name, style in (("greedy", dict(ls="--", c="k")), ("random", dict(ls=":", c="gray"))):
        value = ref.get(name, {}).get("mean_delay_s")
        if value is not None:
            curves.axhline(value, lw=0.9, label=f"{name} (full knowledge) {value:.2f} s" if name == "greedy"
                           else f"{name} {value:.2f} s", **style)
    curves.set_title("dedgeai faithful (20 agents): mean delay per training episode")
    curves.set_xlabel("training episode")
    curves.set_ylabel("mean per-task delay (s), mean over seeds")
    curves.legend(fontsize=7, loc="upper right")
    ratios.axhline(1.0, c="k", ls="--", lw=0.9, label="greedy, same episodes")
    ratios.set_title("the same runs against greedy on their own episodes")
    ratios.set_xlabel(f"training episodes (blocks of {block}, plotted at their last)")
    ratios.set_ylabel("mean delay / greedy's (band: min-max over seeds)")
    ratios.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(OUT / "paper_agents_faithful.png", dpi=110)
    plt.close(fig)


RATIO_AXIS_TOP = 1.5


def _plot_paired_ratios(groups: dict, block: int = 10) -> None:
    """Per 10 episodes, each run's mean delay over greedy's on exactly the same episodes: the
    load of an episode, which dominates the learning curves, cancels out."""
    import matplotlib.pyplot as plt

    fig, axes = _panels(len(groups), height=6.5)
    for ax, (group, algos) in zip(axes, groups.items()):
        lowest = 1.0
        for algo, rs in sorted(algos.items()):
            rs = [r for r in rs if r.get("greedy_same_episodes")]
            if not rs:
                continue
            ratios = np.array([[run / greedy for _, run, greedy in
                                per_block_delays(r["episodes_log"][:60], r["greedy_same_episodes"], block)]
                               for r in rs])
            x = np.arange(block, 61, block)
            lowest = min(lowest, ratios.min())
            off_scale = " (leaves the plot)" if ratios.mean(0).max() > RATIO_AXIS_TOP else ""
            line, = ax.plot(x, ratios.mean(0), marker="o", ms=3,
                            label=f"{algo} ({len(rs)} seed{'s' if len(rs) > 1 else ''}){off_scale}")
            if len(rs) > 1:
                ax.fill_between(x, ratios.min(0), ratios.max(0), alpha=0.12, color=line.get_color())
        ax.axhline(1.0, c="k", ls="--", lw=0.9, label="greedy, same episodes")
        # A diverging run would squash the rest against 1.0: they differ by a few percent.
        ax.set_ylim(lowest - 0.02, min(ax.get_ylim()[1], RATIO_AXIS_TOP))
        ax.set_title(group)
        ax.set_xlabel(f"training episodes (blocks of {block}, plotted at their last)")
        ax.set_ylabel("mean delay / greedy's on the same episodes")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    fig.savefig(OUT / "paired_ratio_curves.png", dpi=110)
    plt.close(fig)


def _paired_greedy_curve(algos: dict, key: str) -> np.ndarray | None:
    """Greedy per episode on the episodes of the seeds one of our algorithms ran (all of our
    algorithms see the same episodes for the same seed; RLlib's runs see others), averaged over
    those seeds."""
    def ours(r):
        return bool(r.get("greedy_same_episodes")) and r.get("paired_as") == "runner"

    best = max(algos.values(), key=lambda rs: sum(map(ours, rs)))
    curves = [[e[key] for e in r["greedy_same_episodes"][:60]] for r in best if ours(r)]
    return np.mean(curves, axis=0) if curves else None


def main() -> int:
    bench = load_benchmark()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="run only jobs whose name contains one of these")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=bench.episodes)
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    ap.add_argument("--cpus-per-job", type=float, default=bench.cpus_per_job,
                    help="CPUs Tune reserves per job, fractions allowed (default: %(default)s, agents.yaml)")
    ap.add_argument("--max-concurrent", type=int, default=bench.max_concurrent_jobs,
                    help="jobs at once (default: %(default)s, agents.yaml)")
    ap.add_argument("--resume", action="store_true",
                    help="restore the Tune experiment of the same jobs (--only, --seeds, --episodes): "
                         "finished and failed jobs are not rerun, unfinished ones continue")
    ap.add_argument("--summarise", action="store_true", help="only rewrite the table and plot")
    ap.add_argument("--unfinished", metavar="JOB", help="pair an unfinished run's checkpointed episodes "
                                                        "with greedy, per 10 episodes")
    args = ap.parse_args()
    RUNS.mkdir(parents=True, exist_ok=True)
    if args.unfinished:
        return report_unfinished(args.unfinished, args.seeds)
    if args.summarise:
        refresh_references(args.seeds)
        pair_finished_runs(args.seeds)
        summarise()
        return 0
    selected = [job for job in jobs(args.seeds) if not args.only or any(s in job["name"] for s in args.only)]
    validate_jobs(selected, args.episodes)      # a bad option is refused before Ray starts
    from cluster.connect import connect
    ray = connect(args.num_cpus)
    try:
        outcome = run_jobs(selected, tune_state(), args.resume, on_result=_record, skip=_saved,
                           runner=f"{Path(__file__).resolve()}:run_saved",
                           runner_kwargs={"episodes": args.episodes, "runs": str(RUNS)},
                           cpus_per_job=args.cpus_per_job, max_concurrent_trials=args.max_concurrent)
    finally:
        ray.shutdown()
    summarise()
    for name in outcome.failed:
        print(f"!! {name} failed: {RUNS / (name + '.error')}", file=sys.stderr)
    if outcome.unfinished:
        print(f"{len(outcome.unfinished)} job(s) unfinished; rerun (with --resume) to continue them",
              file=sys.stderr)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
