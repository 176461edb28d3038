"""The command line of the simulator: evaluate and bench env, as a user runs them."""
import json
import subprocess
import sys

import pytest

EVALUATE_KEYS = {"scenario", "policy", "episodes", "mean_delay_s", "p50_delay_s", "p95_delay_s",
                 "mean_quality", "deadline_miss_rate", "mean_reward"}


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "cluster.cli", *args], capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_evaluate_json_has_the_design_keys():
    out = last_json(cli("evaluate", "--scenario", "dedgeai", "--policy", "greedy", "--episodes", "1",
                        "--set", "slots=5", "--json").stdout)
    assert EVALUATE_KEYS <= set(out)
    assert out["episodes"] == 1 and out["mean_quality"] is None and out["mean_delay_s"] > 0


def test_evaluate_collab_reports_quality_and_misses(profile_override):
    out = last_json(cli("evaluate", "--scenario", "collab-exit/rural", "--policy", "fixed-exit:exit1",
                        "--episodes", "2", "--set", profile_override[0], "--set", "slots=10", "--json").stdout)
    assert 0 <= out["mean_quality"] <= 1 and 0 <= out["deadline_miss_rate"] <= 1


@pytest.mark.parametrize("args, message", [
    (["--policy", "nope"], "is not a heuristic"),
    (["--policy", "greedy", "--set", "n_bs=0"], "n_bs"),
    (["--policy", "greedy", "--episodes", "0"], "--episodes must be >= 1"),
])
def test_evaluate_errors_are_clear(args, message):
    proc = cli("evaluate", "--scenario", "dedgeai", *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr


def test_bench_env_json_keys():
    out = last_json(cli("bench", "env", "--batch", "64", "--seconds", "0.2", "--json").stdout)
    assert {"scenario", "batch", "vector_decisions_per_s", "single_env_step_us"} <= set(out)
    assert out["vector_decisions_per_s"] > 0 and out["batch"] == 64


def test_evaluate_takes_every_policy_the_catalog_names():
    """One registry of policies by name: the reference rules work from the CLI as the heuristics do."""
    for policy in ("size-split:1.75:0.9", "capacity-proportional"):
        out = last_json(cli("evaluate", "--scenario", "dedgeai-corrected", "--policy", policy, "--episodes", "1",
                            "--set", "slots=4", "--json").stdout)
        assert out["mean_delay_s"] > 0 and out["policy"].startswith(policy.split(":")[0])


def test_train_help_lists_the_options_from_their_schema():
    from policies.options import ModelOptions, SACOptions

    text = cli("train", "--help").stdout
    for name in SACOptions.model_fields:
        assert f"training.{name}" in text
    assert "model.network  default 'flat', flat | per-action" in text
    assert "training.hindsight_credit.share  required, > 0, <= 1" in text
    assert all(f"model.{name}" in text for name in ModelOptions.model_fields)


def test_bench_offers_only_what_is_built():
    proc = cli("bench", "nothing", check=False)
    assert proc.returncode == 2 and "choose from 'env', 'generator', 'policy', 'router'" in proc.stderr
