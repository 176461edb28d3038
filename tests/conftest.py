"""Shared fixtures: a temporary run-state home for every test, a small ExitProfile fixture, and
the benchmark scripts (not a package) imported by path."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# A profile fixture with made-up figures for tests only; the shipped default is measured.
FIXTURE_PROFILE = FIXTURES / "profile.json"

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test writes run state (MLflow store, checkpoints) under its own temporary folder."""
    home = tmp_path_factory.mktemp("aigc-edge-home")
    monkeypatch.setenv("AIGC_EDGE_HOME", str(home))
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        unset_for_this_test(monkeypatch, name)
    return home


def unset_for_this_test(monkeypatch, name: str) -> None:
    """Unset now and put back after the test, even when the code under test sets it (`cli.main`
    writes --address and --tracking-uri into os.environ): `delenv` of an absent variable records
    nothing to undo, so a value set later would leak into every following test's Ray and MLflow."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


@pytest.fixture
def profile_override() -> list[str]:
    return [f"profile={FIXTURE_PROFILE}"]


@pytest.fixture
def benchmark_script():
    """Import a script of benchmarks/agents/ by name."""
    import importlib.util

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / "agents" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="session")
def finished_transfer(tmp_path_factory):
    """One finished `aigc-edge transfer` to a user's YAML family, shared by the CLI and the
    MLflow-UI tests: (the run, its --json result)."""
    from test_tune_resume import TransferRun

    run = TransferRun(tmp_path_factory.mktemp("transfer"))
    try:
        yield run, run.run_to_completion(resume=False)
    finally:
        run.cleanup()
