"""Where does a policy put small and big tasks? Greedy, the size-split rule and trained agents.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/agents/placements.py [--job JOB ...]
        [--episodes 5] [--seed 20000]

On dedgeai-corrected (shared form), every policy plays the same `--episodes` episodes (the task
stream does not depend on the actions). Per policy: mean delay against greedy's, the share of
tasks placed in the size-split rule's fast pool (the fastest servers, as many as the small
tasks' work needs), the mean work of the tasks placed there and elsewhere, the mean delay of
small and big tasks (the rule's threshold), and how often the policy picks greedy's server.
Greedy sends big tasks to fast servers (where their own delay is least); the rule does the
opposite. A `--job` is a job of `benchmarks/agents/run.py` whose run has finished here: its
final policy acts by argmax and by sampling (with seed 1).

Writes benchmarks/results/agents/placements.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from envs.scenarios import load_scenario, make_core  # noqa: E402
from policies.heuristics import make_heuristic  # noqa: E402
from policies.catalog import make_policy  # noqa: E402
from policies.reference_rules import CapacityProportional  # noqa: E402

SCENARIO, OVERRIDES = "dedgeai-corrected", ["form=shared"]
RULE = "size-split:1.75:0.9"      # the benchmark's demonstrator (run.py DEMO_RULE)
RUNS = ROOT / "benchmarks" / "results" / "agents" / "runs"


def placements(scen, policy, greedy, theta: float, episodes: int, seed: int) -> dict:
    """Play `episodes` episodes at once: per server the tasks placed and their work; the delays of
    small (work <= theta) and big tasks; how often the policy picks greedy's server."""
    core = make_core(scen, num_envs=episodes, seed=seed)
    n = core.encoding.n
    count, work = np.zeros(n), np.zeros(n)
    delay = {"all": [], "small": [], "big": []}
    same_as_greedy = []
    live = np.ones(episodes, dtype=bool)
    while live.any():
        obs, state = core.observe(), core.network_state()
        actions = core.encoding.check(policy.decide(obs, state))
        same_as_greedy.append(actions[live] == greedy.decide(obs, state)[live])
        task_work = core.layout.field(obs, "work_gcycles")[live, 0]
        np.add.at(count, actions[live], 1.0)
        np.add.at(work, actions[live], task_work)
        result = core.step(actions, active=None if live.all() else live)
        small = task_work <= theta
        delay["small"].append(result.delay_s[live][small])
        delay["big"].append(result.delay_s[live][~small])
        live &= ~result.done
    means = {k: float(np.mean(np.concatenate(v))) for k, v in delay.items() if k != "all"}
    n_small = sum(map(len, delay["small"]))
    n_big = sum(map(len, delay["big"]))
    return {"count": count, "work": work, "same_as_greedy": float(np.mean(np.concatenate(same_as_greedy))),
            "small_delay_s": means["small"], "big_delay_s": means["big"], "small_share": n_small / (n_small + n_big),
            # the metric: each episode's mean over its tasks, then the mean over episodes; with
            # episodes of similar length this is close to the mean over all tasks
            "mean_delay_s": (means["small"] * n_small + means["big"] * n_big) / (n_small + n_big)}


def job_policies(job: str, scen) -> list[tuple[str, object]]:
    from policies.artifact import load_policy

    path = RUNS / f"{job}.json"
    if not path.is_file():
        raise SystemExit(f"--job {job}: no finished run ({path} is missing); run benchmarks/agents/run.py --only {job}")
    folder = json.loads(path.read_text())["policy"]
    if not Path(folder).is_dir():
        raise SystemExit(f"--job {job}: its policy folder {folder} is gone (checkpoints are not in git); "
                         f"rerun the job to make it")
    return [(f"{job}, argmax", load_policy(folder, scen)), (f"{job}, sampled", load_policy(folder, scen, sample=True, seed=1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", nargs="*", default=[], help="finished jobs of benchmarks/agents/run.py")
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=20_000)
    args = ap.parse_args()
    if args.episodes < 1:
        ap.error("--episodes must be >= 1")
    scen = load_scenario(SCENARIO, OVERRIDES)
    encoding = make_core(scen, num_envs=1).encoding
    rule = make_policy(RULE, scen)
    fast = rule.small_pool
    capacity = scen.es_capacities()
    policies = [("greedy", make_heuristic("greedy", encoding)), (RULE, rule),
                (CapacityProportional.name, CapacityProportional(scen, seed=1))]
    for job in args.job:
        policies += job_policies(job, scen)
    rows, greedy_delay = [], None
    greedy = policies[0][1]
    for name, policy in policies:
        print(f"{name} ...", file=sys.stderr, flush=True)
        p = placements(scen, policy, greedy, rule.theta, args.episodes, args.seed)
        greedy_delay = greedy_delay or p["mean_delay_s"]
        rows.append(f"| {name} | {p['mean_delay_s']:.2f} ({p['mean_delay_s'] / greedy_delay:.3f}x) | "
                    f"{p['small_delay_s']:.2f} | {p['big_delay_s']:.2f} | {p['same_as_greedy']:.0%} | "
                    f"{p['count'][fast].sum() / p['count'].sum():.0%} | "
                    f"{p['work'][fast].sum() / p['count'][fast].sum():.2f} / "
                    f"{p['work'][~fast].sum() / p['count'][~fast].sum():.2f} |")
    lines = ["# Where policies place small and big tasks (dedgeai-corrected, shared form)", "",
             f"Generated by `benchmarks/agents/placements.py {' '.join(f'--job {j}' for j in args.job)} "
             f"--episodes {args.episodes} --seed {args.seed}`: every policy on the same {args.episodes} episodes "
             f"({p['small_share']:.0%} of the tasks are small: work c*q <= {rule.theta:g} Gcycles, the rule's "
             f"threshold). Mean delay over all tasks of the episodes. Fast pool: the {int(fast.sum())} servers the "
             f"rule {RULE} keeps for small tasks ({capacity[fast].sum():.0f} of {capacity.sum():.0f} Gcycles/s).", "",
             "| policy | mean delay (s) | small tasks' delay (s) | big tasks' delay (s) | greedy's server | "
             "tasks in the fast pool | mean work there / elsewhere (Gcycles) |",
             "|---|---:|---:|---:|---:|---:|---:|", *rows]
    out = ROOT / "benchmarks" / "results" / "agents" / "placements.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
