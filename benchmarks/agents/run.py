"""The agents benchmark: LAD-TS reproduction on dedgeai and the collab-exit comparison.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/agents/run.py [--only SUBSTRING ...] [--seeds 0 1 2]

Runs the jobs below in priority order, each with `policies.training.train` (the library behind
`aigc-edge train`). Every finished run is saved at once to `benchmarks/results/agents/runs/<job>.json`
and skipped next time; an interrupted run resumes from its RLlib checkpoint. After every run the
results table (`benchmarks/results/agents/results.md`) and the learning curves
(`benchmarks/results/agents/learning_curves.png`, greedy, random and on dedgeai the state-free
capacity-proportional rule on the same scenario as reference lines; on dedgeai also
`paired_ratio_curves.png`, each run per 10 episodes against greedy on the same episodes) are
rewritten from all saved runs. Several processes with different `--only` filters can share the work (each run is owned by
one process through a lock file).

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

OUT = ROOT / "benchmarks" / "results" / "agents"
RUNS = OUT / "runs"
FAITHFUL = ["form=multi-agent"]          # 20 independent agents, one per BS (the paper's setting)
FAITHFUL_GROUP = "dedgeai faithful (20 agents)"
SHARED = ["form=shared"]                  # one policy, BS identity observed

# The 20-agent ensemble: per-agent networks of 64 units (the public code's per-BS networks are
# small too), 20 x 32 rows per SGD step, one step per 512 decisions, 20 copies (3 rounds of 20:
# the last 10 episodes start after 40 have been simulated; 10 copies would cost ~2x the sampling
# time of the 20-agent forward pass, 30 copies would start the last 10 after only 30).
FAITHFUL_TRAINING = {"minibatch_per_agent": 32, "decisions_per_update": 512}
FAITHFUL_MODEL = {"hidden": 64, "critic_hidden": 64}
FAITHFUL_ENVS = 20
# Every action scored by one shared network from its server's own columns (model.network); the
# hidden layers then run once per action, so a quarter of the width (~2x a flat step's cost).
PER_ACTION_MODEL = {"network": "per-action", "hidden": 32, "critic_hidden": 32}
# The best size-split rule in corrected mode (benchmarks/results/agents/reference_rules.md).
DEMO_RULE = "size-split:1.75:0.9"


def jobs(seeds: list[int]) -> list[dict]:
    """Jobs in priority order: what the issue must show first, extra seeds last."""
    def faithful(algo, seed):
        return {"group": FAITHFUL_GROUP, "name": f"faithful-{algo}-s{seed}",
                "cfg": dict(scenario="dedgeai", scenario_overrides=FAITHFUL, algo=algo, seed=seed,
                            training=dict(FAITHFUL_TRAINING), model=dict(FAITHFUL_MODEL),
                            num_envs=FAITHFUL_ENVS)}

    def shared(algo, seed):
        return {"group": "dedgeai shared (one policy)", "name": f"shared-{algo}-s{seed}",
                "cfg": dict(scenario="dedgeai", scenario_overrides=SHARED, algo=algo, seed=seed)}

    def faithful_rllib(algo, seed):
        # RLlib's stock algorithm with one independent policy per BS on the turn-based env.
        return {"group": FAITHFUL_GROUP, "name": f"faithful-rllib-{algo}-s{seed}",
                "label": f"{algo} (RLlib, 20 policies)",
                "cfg": dict(scenario="dedgeai", scenario_overrides=FAITHFUL, algo=algo, seed=seed)}

    def faithful_no_slot(seed):
        # Our LAD keying beside the faithful one: (BS, position) without the slot, so a context
        # recurs ~59 times per episode and its stored probability is refreshed that often.
        job = faithful("lad", seed)
        job.update(name=f"faithful-lad-noslot-s{seed}", label="lad (no-slot keying)")
        job["cfg"]["model"]["lad_keying"] = "no-slot"
        return job

    def faithful_entropy(algo, seed, scale):
        # With Q_bef unobserved every task of a slot sees the same queues: a policy must stay
        # spread. The state-free capacity-proportional draw has ~2.9 nats; our default target is
        # 0.65 log 20 = 1.95 nats. Does a higher target entropy help?
        job = faithful(algo, seed)
        job.update(name=f"faithful-{algo}-ent{scale}-s{seed}", label=f"{algo} (target entropy {scale} log 20)")
        job["cfg"]["training"]["target_entropy_scale"] = scale
        return job

    def tuned_sac(job, seed):
        # RLlib SAC's target_entropy "auto" is -1 for a Discrete space: alpha then falls for
        # ever and the near-greedy policy herds tasks. Ours is 0.65 log 20: give it the same.
        job.update(name=job["name"].replace(f"-sac-s{seed}", f"-sac-tuned-s{seed}"),
                   label=job.get("label", "sac").replace("sac", "sac (target entropy 0.65 log 20)", 1))
        job["cfg"]["training"] = {"target_entropy": float(0.65 * np.log(20))}
        return job

    def shared_tuned_ppo(seed):
        # A faster learner and no value-loss clip: RLlib's default vf_clip_param of 10 clips the
        # squared error of returns that reach tens of seconds here.
        job = shared("ppo", seed)
        job.update(name=f"shared-ppo-tuned-s{seed}", label="ppo (lr 1e-3, 8 epochs, no value clip)")
        job["cfg"]["training"] = {"lr": 1e-3, "num_epochs": 8, "vf_clip_param": 1e6}
        return job

    def corrected(algo, seed):
        return {"group": "dedgeai corrected (shared)", "name": f"corrected-{algo}-s{seed}",
                "cfg": dict(scenario="dedgeai-corrected", scenario_overrides=SHARED, algo=algo, seed=seed)}

    def corrected_long_horizon(seed, gamma, reward_scale):
        # The paper's gamma 0.5 makes every agent near-myopic; can a long horizon see that greedy's
        # placement hurts the tasks after it (benchmarks/agents/reference_rules.py: it does, a lot)?
        # reward_scale keeps the critic's targets (~ reward / (1 - gamma)) of a similar size.
        job = corrected("sac-mlp", seed)
        job.update(name=f"corrected-sac-mlp-gamma{gamma}-s{seed}", label=f"sac-mlp (gamma {gamma})")
        job["cfg"]["training"] = {"gamma": gamma, "reward_scale": reward_scale}
        return job

    def corrected_long_horizon_ppo(seed, gamma):
        # PPO is the best agent in corrected mode at the paper's gamma 0.5 (level with greedy).
        # Its episode return is exactly the metric (minus the total delay), and GAE with lambda
        # near 1 passes a placement's cost on to the tasks after it without a critic having to
        # bootstrap it: does a long horizon let it find what the size-split rule finds? Returns
        # reach -6 s / (1 - gamma): RLlib's value-loss clip (10) would stop the critic learning.
        job = corrected("ppo", seed)
        job.update(name=f"corrected-ppo-gamma{gamma}-s{seed}", label=f"ppo (gamma {gamma}, lambda 0.95)")
        job["cfg"]["training"] = {"gamma": gamma, "lambda_": 0.95, "lr": 1e-3, "vf_clip_param": 1e6}
        return job

    def variant(job, tag):
        # A copy of a job whose name carries `tag` before its seed: "<name>-<tag>-s<seed>".
        suffix = f"-s{job['cfg']['seed']}"
        assert job["name"].endswith(suffix), job["name"]
        return dict(job, cfg=dict(job["cfg"]), name=f"{job['name'][:-len(suffix)]}-{tag}{suffix}")

    def caused(job, share, horizon):
        # Hindsight credit: a share of every wait charged to the decision that caused it (the same
        # total per episode, envs/dedgeai.py `caused_wait`), so even a near-myopic agent sees what
        # greedy's placement does to the tasks behind it `horizon` slots on.
        job = variant(job, f"caused{share}-h{horizon}")
        job["label"] = f"{job['cfg']['algo']} (caused-wait share {share}, {horizon} slots)"
        job["cfg"]["training"] = {"hindsight_credit": {"share": share, "horizon": horizon}}
        return job

    def corrected_caused(algo, seed, share, horizon):
        return caused(corrected(algo, seed), share, horizon)

    def corrected_demo(algo, seed, gamma=0.5, reward_scale=0.1, pretrain=0, kept=0.0, cql=0.0, **rates):
        # No agent finds the size-split rule (0.74x greedy here) on its own. Started from its
        # demonstrations (the first round of 10 episodes, 300k decisions, cloned by the actor
        # while the critics learn from them; then `pretrain` SGD steps on them alone; `kept`:
        # kept all run as that share of every batch, as Ape-X DQfD's 25%; `cql`: a conservative
        # critic on them; `rates`: actor_lr / alpha_lr), does SAC keep it, improve it, or
        # return to greedy?
        job = corrected(algo, seed)
        job["group"] += ", from size-split demonstrations"
        short = {"actor_lr": ("alr", "actor lr"), "alpha_lr": ("tlr", "temperature lr")}
        suffix = (("" if gamma == 0.5 else f"-gamma{gamma}") + (f"-pre{pretrain // 1000}k" if pretrain else "")
                  + (f"-kept{kept}" if kept else "") + (f"-cql{cql}" if cql else "")
                  + "".join(f"-{short[k][0]}{v:g}" for k, v in rates.items()))
        details = ([f"{pretrain:,} pre-training steps"] if pretrain else []) + ([f"gamma {gamma}"] if gamma != 0.5 else []) \
            + ([f"kept as {kept:.0%} of every batch"] if kept else []) + ([f"CQL weight {cql}"] if cql else []) \
            + [f"{short[k][1]} {v:g}" for k, v in rates.items()]
        job.update(name=f"corrected-{algo}-demo{suffix}-s{seed}",
                   label=f"{algo} ({', '.join(details)})" if details else algo)
        job["cfg"]["training"] = {"demonstrations": {"policy": DEMO_RULE, "decisions": 300_000,
                                                     "pretrain_updates": pretrain, "batch_share": kept,
                                                     "cql_weight": cql},
                                  "gamma": gamma, "reward_scale": reward_scale, **rates}
        return job

    def per_action(job):
        # Greedy and the size-split rule take an argmin over servers of a function of each
        # server's own state; a flat actor clones greedy at 12x greedy's delay (argmax), a
        # per-action one at 1.0x (benchmarks/results/agents/clone_capacity.md).
        job = variant(job, "peraction")
        label = job.get("label", job["cfg"]["algo"])
        job["label"] = label.replace(" (", " (per-action networks, ", 1) if "(" in label else f"{label} (per-action networks)"
        job["cfg"]["model"] = dict(PER_ACTION_MODEL)
        return job

    def collab(algo, seed):
        return {"group": "collab-exit/urban", "name": f"collab-{algo}-s{seed}",
                "cfg": dict(scenario="collab-exit/urban", algo=algo, seed=seed)}

    def collab_dense(algo, seed):
        # collab-exit episodes are short (500 decisions): 60 of them give the default schedule
        # (one SGD step per 256 decisions) only ~100 updates; here one per 4 decisions.
        job = collab(algo, seed)
        job.update(group=job["group"] + ", 1 update / 4 decisions", name=f"collab-real-dense-{algo}-s{seed}")
        job["cfg"]["training"] = {"decisions_per_update": 4, "learning_starts": 1000, "rollout_decisions": 1000}
        return job

    first, rest = seeds[:1], seeds[1:]
    out = [faithful(a, s) for s in seeds for a in ("lad", "d2sac", "sac-mlp")]
    out += [faithful_no_slot(s) for s in seeds]
    out += [shared("lad", s) for s in first]
    out += [corrected(a, s) for s in first for a in ("lad", "d2sac", "sac-mlp")]
    out += [collab(a, s) for s in first for a in ("lad", "d2sac")]
    out += [collab_dense(a, s) for s in first for a in ("lad", "d2sac")]
    out += [tuned_sac(shared("sac", s), s) for s in first] + [shared("ppo", s) for s in first]
    out += [shared(a, s) for s in first for a in ("sac", "dqn", "d2sac")]
    out += [shared(a, s) for s in rest for a in ("lad", "d2sac", "sac", "dqn", "ppo")]
    out += [collab(a, s) for s in rest for a in ("lad", "d2sac")]
    out += [corrected(a, s) for s in rest for a in ("lad", "d2sac", "sac-mlp")]
    out += [corrected_long_horizon(s, g, scale) for s in first for g, scale in ((0.99, 0.1), (0.999, 0.01))]
    out += [faithful_entropy("sac-mlp", s, scale) for s in first for scale in (0.8, 0.9)]
    out += [shared_tuned_ppo(s) for s in first] + [corrected("ppo", s) for s in first]
    out += [faithful_rllib("ppo", s) for s in first]
    out += [tuned_sac(faithful_rllib("sac", s), s) for s in first] + [faithful_rllib("dqn", s) for s in first]
    # horizon 1000 > the episode's 60 slots: every transition waits for the end of its episode.
    out += [corrected_caused("sac-mlp", s, share, h) for s in first
            for share, h in ((0.5, 2), (1.0, 2), (0.5, 6), (1.0, 6), (0.5, 1000))]
    out += [corrected_caused("sac-mlp", s, 0.5, 2) for s in rest]
    out += [corrected_caused(a, s, 0.5, 2) for s in first for a in ("lad", "d2sac")]
    out += [corrected("ppo", s) for s in rest]      # the best agent in corrected mode: all seeds
    out += [faithful_rllib("ppo", s) for s in rest]    # ... and in faithful mode
    out += [corrected_long_horizon_ppo(s, g) for s in first for g in (0.99, 0.999)]
    out += [corrected_demo("sac-mlp", s, pretrain=10_000) for s in first]
    out += [corrected_demo("sac-mlp", s, pretrain=10_000, kept=0.25) for s in first]
    out += [corrected_demo("sac-mlp", s, pretrain=10_000, kept=0.25, cql=1.0) for s in first]
    out += [corrected_demo("sac-mlp", s, pretrain=10_000, kept=0.25, cql=5.0) for s in first]
    out += [corrected_demo("sac-mlp", s, pretrain=10_000, kept=0.25, cql=1.0, actor_lr=1e-4) for s in first]
    out += [corrected_demo("sac-mlp", s, pretrain=10_000, kept=0.25, cql=20.0) for s in first]
    out += [corrected_demo("sac-mlp", s, pretrain=10_000, kept=0.25, cql=5.0, actor_lr=1e-4) for s in first]
    out += [corrected_demo("sac-mlp", s, pretrain=10_000, kept=0.25, cql=20.0) for s in rest]
    # The diffusion actors in the same setting, and a near-fixed temperature (its swings went
    # with the policy's in the runs above).
    out += [corrected_demo(a, s, pretrain=10_000, kept=0.25, cql=20.0) for s in first for a in ("lad", "d2sac")]
    out += [corrected_demo("sac-mlp", s, pretrain=10_000, kept=0.25, cql=20.0, alpha_lr=1e-5) for s in first]
    out += [corrected_demo("d2sac", s, pretrain=10_000, kept=0.25, cql=20.0) for s in rest]
    out += [corrected_demo("sac-mlp", s, 0.99, pretrain=10_000) for s in first]
    out += [per_action(corrected(a, s)) for s in first for a in ("sac-mlp", "d2sac")]
    out += [per_action(corrected_demo(a, s, pretrain=10_000, kept=0.25, cql=20.0)) for s in first for a in ("sac-mlp", "d2sac")]
    # gamma 0.5 is near-myopic, and greedy is the myopic optimum: a long horizon can value the split.
    out += [per_action(corrected_demo("sac-mlp", s, 0.99, pretrain=10_000, kept=0.25, cql=20.0)) for s in first]
    out += [per_action(corrected_long_horizon(s, 0.99, 0.1)) for s in first]
    out += [per_action(corrected_demo("sac-mlp", s, pretrain=10_000)) for s in first]   # without kept/CQL
    # From scratch with hindsight credit: the flat networks could not even clone greedy, so the
    # credit runs above could not show whether charging the waits a placement causes points an
    # agent at the split. With share 1.0 a decision's reward is its own delay plus the waits it
    # causes within the horizon: the marginal cost of the placement to the metric.
    out += [per_action(corrected_caused("sac-mlp", s, share, h)) for s in first for share, h in ((1.0, 2), (1.0, 6), (0.5, 2))]
    out += [per_action(corrected(a, s)) for s in first for a in ("lad",)]
    # All of the wait charged within 2 slots went below greedy from scratch on seed 0: all seeds,
    # and the diffusion actors.
    out += [per_action(corrected_caused("sac-mlp", s, 1.0, 2)) for s in rest]
    out += [per_action(corrected_caused(a, s, 1.0, 2)) for s in seeds for a in ("lad", "d2sac")]
    out += [per_action(corrected_demo(a, s, pretrain=10_000, kept=0.25, cql=20.0)) for s in rest for a in ("sac-mlp", "d2sac")]
    out += [per_action(corrected(a, s)) for s in rest for a in ("sac-mlp", "d2sac")]
    # The same recipe with Q_bef unobserved (the paper's observation, one shared policy): the
    # size-split rule needs no Q_bef (0.75x greedy there too), so can the agents find it here?
    out += [per_action(caused(shared(a, s), 1.0, 2)) for s in first for a in ("lad", "sac-mlp")]
    # ~3 hours each on one core (docs/agents.md, Cost): the last seeds of the faithful form.
    out += [tuned_sac(faithful_rllib("sac", s), s) for s in rest] + [faithful_rllib("dqn", s) for s in rest]
    return out


def run_job(job: dict, episodes: int) -> dict:
    from cluster.output import TrainingProgressBar
    from envs.scenarios import load_scenario
    from policies.registry import algorithm
    from policies.tracking import MlflowTrainingRecorder
    from policies.training import TrainConfig, train

    cfg = TrainConfig(**job["cfg"], episodes=episodes, run_name=f"bench-{job['name']}",
                      register_policy=False)
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="run only jobs whose name contains one of these")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--num-cpus", type=int, default=None)
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
    import torch
    torch.set_num_threads(1)
    from cluster.connect import connect
    connect(args.num_cpus)
    cache_path = OUT / "heuristics_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    for job in jobs(args.seeds):
        if args.only and not any(s in job["name"] for s in args.only):
            continue
        done, lock = RUNS / f"{job['name']}.json", RUNS / f".{job['name']}.lock"
        if done.is_file() or (RUNS / f"{job['name']}.error").is_file():
            continue
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
        except FileExistsError:
            pid = int(lock.read_text() or 0)
            if pid and _alive(pid):
                continue
            lock.write_text(str(os.getpid()))   # stale lock of a killed process: take it over
        try:
            print(f"== {job['name']}", file=sys.stderr, flush=True)
            try:
                result = run_job(job, args.episodes)
            except Exception as exc:  # noqa: BLE001 - report, skip, go on with the next job
                print(f"!! {job['name']} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                (RUNS / f"{job['name']}.error").write_text(traceback.format_exc())
                continue
            done.write_text(json.dumps(result, default=float))
            ref = heuristic_reference(job["cfg"]["scenario"], job["cfg"].get("scenario_overrides", []), cache)
            cache[job["group"]] = ref
            (OUT / "heuristics_cache.json").write_text(json.dumps(cache, indent=1))
            summarise()
        finally:
            lock.unlink(missing_ok=True)
    import ray
    ray.shutdown()
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
