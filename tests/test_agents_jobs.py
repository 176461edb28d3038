"""The agents benchmark's jobs as data (tuning/experiments/agents.yaml) and their Tune stage
(tuning/jobs.py `run_jobs`): the YAML gives exactly the jobs benchmarks/agents/run.py ran before
(the fixture is the job list of its former `jobs([0, 1, 2])`), and a tiny stage runs, saves and, on
--resume, skips."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from envs.config import ConfigError, validate
from tuning.jobs import AgentsBenchmark, load_benchmark, train_config, validate_jobs

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_yaml_gives_exactly_the_former_job_list():
    want = json.loads((FIXTURES / "agents_jobs.json").read_text())
    got = load_benchmark().jobs_of([0, 1, 2])
    assert [j["name"] for j in got] == [j["name"] for j in want]          # same jobs, same priority order
    assert got == want
    # and the same types (1e6 a float, 300000 an int): what the run JSONs and TrainConfigs see
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    validate_jobs(got, 60)
    for job, old in zip(got, want):
        assert train_config(job, 60) == train_config(old, 60)


def test_seed_sets_follow_seeds():
    bench = load_benchmark()
    names = [j["name"] for j in bench.jobs_of([4])]
    assert "faithful-lad-s4" in names and "shared-ppo-tuned-s4" in names        # all and first
    assert not any(n.endswith("-s0") for n in names)
    assert "shared-sac-s5" in [j["name"] for j in bench.jobs_of([4, 5])]       # rest


def test_job_groups_are_validated():
    base = {"bases": {"b": {"group": "g", "scenario": "dedgeai"}}}
    with pytest.raises(ConfigError, match="unknown base"):
        validate(AgentsBenchmark, {**base, "jobs": [{"base": "nope", "name": "x-s{seed}", "algos": ["lad"]}]})
    with pytest.raises(ConfigError, match="algo"):
        validate(AgentsBenchmark, {**base, "jobs": [{"base": "b", "name": "x-s{seed}", "algos": ["lda"]}]})
    with pytest.raises(ConfigError, match="must contain \\{algo\\}"):
        validate(AgentsBenchmark, {**base, "jobs": [{"base": "b", "name": "x-s{seed}", "algos": ["lad", "d2sac"]}]})
    with pytest.raises(ConfigError, match="only \\{algo\\} and \\{seed\\}"):
        validate(AgentsBenchmark, {**base, "jobs": [{"base": "b", "name": "x-{gamma}-s{seed}", "algos": ["lad"]}]})
    bench = validate(AgentsBenchmark, {**base, "jobs": [{"base": "b", "name": "x-s{seed}", "algos": ["lad"]}] * 2})
    with pytest.raises(ConfigError, match="unique"):
        bench.jobs_of([0])
    with pytest.raises(ConfigError, match="job x-s0"):
        validate_jobs([{"group": "g", "name": "x-s0", "cfg": {"scenario": "dedgeai", "algo": "lad", "seed": 0,
                                                              "training": {"gama": 0.9}}}], 60)


def _tiny(algo: str) -> dict:
    return {"group": "collab-exit/urban", "name": f"tiny-{algo}-s0",
            "cfg": {"scenario": "collab-exit/urban", "algo": algo, "seed": 0, "num_envs": 2,
                    "training": {"rollout_decisions": 256, "learning_starts": 256, "decisions_per_update": 16}},
            "episodes": 2}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_run_jobs_saves_each_run_and_resume_does_not_rerun_them(isolated_home, monkeypatch):
    from cluster.connect import connect
    from tuning.jobs import run_jobs, stage_name

    monkeypatch.delenv("RAY_ADDRESS", raising=False)          # a local Ray of our own, never a shared one
    jobs = [_tiny("sac-mlp")]          # one job: the scheduler, not the agents, is under test
    runs, storage = isolated_home / "runs", isolated_home / "tune"
    kwargs = {"episodes": 60, "runs": str(runs)}               # the jobs' own `episodes: 2` win
    seen: list[tuple[str, bool]] = []
    ray = connect(1)
    try:
        outcome = run_jobs(jobs, storage, resume=False, on_result=lambda job, m: seen.append((job["name"], m["skipped"])),
                           runner_kwargs=kwargs, cpus_per_job=0.5, max_concurrent_trials=2)
        assert outcome.ok and outcome.trials == 1, outcome
        assert seen == [("tiny-sac-mlp-s0", False)]
        saved = {j["name"]: runs / f"{j['name']}.json" for j in jobs}
        for name, path in saved.items():
            run = json.loads(path.read_text())
            assert run["job"] == name and run["episodes"] == 2 and len(run["episodes_log"]) == 2
            assert "greedy_eval" in run and "sampled_eval" in run
        mtimes = {name: path.stat().st_mtime_ns for name, path in saved.items()}
        assert (storage / stage_name(jobs, kwargs) / "tuner.pkl").is_file()

        seen.clear()
        again = run_jobs(jobs, storage, resume=True, on_result=lambda job, m: seen.append((job["name"], m["skipped"])),
                         runner_kwargs=kwargs, cpus_per_job=0.5, max_concurrent_trials=2)
        assert again.restored and again.ok and again.trials == 1, again
        assert seen == []                                      # finished trials are not run again
        assert {name: path.stat().st_mtime_ns for name, path in saved.items()} == mtimes
        assert sorted(p.name for p in runs.iterdir()) == sorted(f"{n}.json" for n in saved)
    finally:
        ray.shutdown()
