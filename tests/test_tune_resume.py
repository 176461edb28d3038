"""`aigc-edge tune --resume` after a Ctrl-C and after a SIGKILL of the whole run, on real Ray Tune
and a real MLflow store: finished trials are not rerun, unfinished ones continue from their
checkpoints, and no MLflow run is left RUNNING.

Each run of the command gets a home (`AIGC_EDGE_HOME`, with its SQLite MLflow store), a Ray temp
folder and a Ray auth token of its own, and runs in a process group of its own. Ray's workers leave
that group (each is a group leader), so every process of a run is found by what only its processes
carry: the home in their environment, or the Ray temp folder in their environment or command line.
Only those are killed; never `ray stop`, which would stop every Ray on the machine.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[1]
NAME = "resume-test"
TRANSFER_EXPERIMENT = "aigc-edge/transfer"
MODES = {"none", "init", "source"}
SUMMARY_METRICS = ("jumpstart", "asymptotic_gain", "auc_norm", "transfer_ratio")


def experiment_yaml(path: Path) -> Path:
    """The tiny experiment: one pair, scratch and init, one seed, a few episodes (pi-reuse resumes
    through the same trial code and is left out: the suite has a 15-minute budget)."""
    # A collab-exit/peak episode is about 1100 decisions: an evaluation about every 2 episodes.
    path.write_text(f"""\
name: {NAME}
algo: lad
pairs: [{{source: collab-exit/urban, target: collab-exit/peak}}]
modes: [none, init]
seeds: [0]
source_episodes: 2
target_episodes: 3
eval_every_decisions: 2048
eval_episodes: 1
num_envs: 2
training: {{rollout_decisions: 256, learning_starts: 256, decisions_per_update: 16}}
cpus_per_trial: 0.5
max_concurrent_trials: 2
checkpoint_every_s: 1
""")
    return path


def aigc_edge_command() -> list[str]:
    script = ROOT / ".venv" / "bin" / "aigc-edge"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cluster.cli"]


def _processes():
    """(pid, environment, command line) of every process this user may read (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "environ").read_bytes(), (entry / "cmdline").read_bytes()
            except OSError:
                pass


def processes_marked(marks: list[str]) -> list[int]:
    """Pids of the live processes whose environment or command line holds one of `marks`
    (this process excepted; a zombie's environment reads empty)."""
    needles = [m.encode() for m in marks]
    return [pid for pid, env, cmd in _processes()
            if pid != os.getpid() and any(n in env or n in cmd for n in needles)]


def kill_marked(marks: list[str], timeout_s: float = 60.0) -> list[int]:
    """SIGKILL every process carrying `marks` until none is left; -> the pids it found."""
    found: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = processes_marked(marks)
        if not left:
            return sorted(found)
        for pid in left:
            found.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    raise AssertionError(f"processes of this test survived SIGKILL: {processes_marked(marks)}")


def wait_until_gone(marks: list[str], timeout_s: float = 60.0) -> list[int]:
    """Wait for the processes carrying `marks` to end by themselves; -> those still alive."""
    deadline = time.monotonic() + timeout_s
    while (left := processes_marked(marks)) and time.monotonic() < deadline:
        time.sleep(1.0)
    return left


class TuneExperiment:
    """The tiny experiment run by `aigc-edge tune FILE --json` in a process group of its own."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.home = self.tmp / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        # Short: Ray's socket paths under it must fit in 107 bytes (a pytest tmp_path would not).
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="aet-", dir="/tmp"))
        self.config = experiment_yaml(self.tmp / f"{NAME}.yaml")
        self.root = self.home / "experiments" / NAME
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "RAY_ADDRESS")}
        self.env.update(AIGC_EDGE_HOME=str(self.home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
                        RAY_TMPDIR=str(self.ray_tmp), RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
        self.marks = [f"AIGC_EDGE_HOME={self.home}\0", str(self.ray_tmp)]
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    # -- the command -----------------------------------------------------------------------------
    def start(self, resume: bool = False) -> subprocess.Popen:
        assert self.proc is None or self.proc.poll() is not None, "the previous run is still going"
        self.runs += 1
        self.out, self.err = self.tmp / f"tune{self.runs}.out", self.tmp / f"tune{self.runs}.err"
        command = self.command(resume)
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self.proc

    def command(self, resume: bool) -> list[str]:
        return [*aigc_edge_command(), "tune", str(self.config), "--json"] + (["--resume"] if resume else [])

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"aigc-edge tune did not end in {timeout_s:.0f} s:\n{self.stderr_tail()}")

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def stderr_tail(self, chars: int = 4000) -> str:
        return self.err.read_text(errors="replace")[-chars:] if self.err.is_file() else ""

    def result(self) -> dict:
        lines = [line for line in self.out.read_text().splitlines() if line.strip()]
        assert lines, f"no stdout:\n{self.stderr_tail()}"
        return json.loads(lines[-1])

    def run_to_completion(self, resume: bool, timeout_s: float = 1500) -> dict:
        self.start(resume=resume)
        code = self.wait(timeout_s)
        assert code == 0, f"exit {code}:\n{self.stderr_tail()}"
        result = self.result()
        assert result.get("name", NAME) == NAME and result["parent_run_id"] == self.parent_run_id(), result
        return result

    def wait_for(self, condition, what: str, timeout_s: float = 900) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"aigc-edge tune ended (exit {self.proc.returncode}) before {what}:\n"
                                     f"{self.stderr_tail()}")
            time.sleep(0.5)
        raise AssertionError(f"no {what} in {timeout_s:.0f} s:\n{self.stderr_tail()}")

    def cleanup(self) -> list[int]:
        """Kill whatever of this experiment still runs (group first, then the marked rest)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.signal_group(signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        killed = kill_marked(self.marks)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        return killed

    # -- its run state ---------------------------------------------------------------------------
    def expected_trials(self) -> dict[str, Path]:
        """{reuse mode (or "source"): the trial's folder}, as the driver lays them out."""
        from envs.config import load_config
        from tuning.experiment import SOURCE_STAGE, ExperimentConfig
        from tuning.trial import TrialSpec, run_dir

        exp = load_config(ExperimentConfig, str(self.config), [])
        out = {}
        for family in exp.sources():
            for seed in exp.seeds:
                spec = TrialSpec.of({"cell": {"mode": SOURCE_STAGE, "target": family, "source": None}, "seed": seed})
                out[SOURCE_STAGE] = run_dir(self.root, exp, spec)
        for cell in exp.cells():
            for seed in exp.seeds:
                out[cell["mode"]] = run_dir(self.root, exp, TrialSpec.of({"cell": cell, "seed": seed}))
        assert set(out) == MODES, out
        return out

    def done_mtimes(self) -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in
                list(self.root.glob("trials/*/DONE.json")) + list(self.root.glob("sources/*/*/*/DONE.json"))}

    def transfer_in_progress(self) -> list[Path]:
        """Target trials that checkpointed at least one evaluation point and have not finished."""
        found = []
        for state in self.root.glob("trials/*/run.json"):
            try:
                curve = json.loads(state.read_text()).get("curve") or []
            except (OSError, ValueError):
                continue                    # being written
            if curve and not (state.parent / "DONE.json").exists():
                found.append(state.parent)
        return found

    def parent_run_id(self) -> str:
        return json.loads((self.root / "experiment.json").read_text())["parent_run_id"]

    def client(self):
        import mlflow
        return mlflow.MlflowClient(f"sqlite:///{self.home / 'mlflow.db'}")

    def runs_of_experiment(self):
        from mlflow.entities import ViewType

        c = self.client()
        experiment = c.get_experiment_by_name(TRANSFER_EXPERIMENT)
        assert experiment is not None, "no MLflow experiment aigc-edge/transfer"
        return c.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000)


class TransferRun(TuneExperiment):
    """`aigc-edge transfer` from collab-exit/urban to a family given as the user's own YAML file
    (init against scratch, tiny budgets), in a process group of its own."""

    TINY = ["--set", "eval_every_decisions=256", "--set", "eval_episodes=2", "--set", "num_envs=2",
            "--set", "training.rollout_decisions=256", "--set", "training.learning_starts=256",
            "--set", "training.decisions_per_update=16", "--set", "cpus_per_trial=0.5"]

    def __init__(self, tmp: Path):
        super().__init__(tmp)
        self.family = self.tmp / "busy-urban.yaml"
        self.family.write_text("# the urban network with 60% more arrivals\nscenario: collab-exit\n"
                               "family: urban\ntasks:\n  arrival_rate: 0.8\n")
        self.root = self.home / "experiments" / "transfer-collab-exit-urban-to-busy-urban-init-lad-s0"

    def command(self, resume: bool) -> list[str]:
        return [*aigc_edge_command(), "transfer", "--source", "collab-exit/urban", "--target", str(self.family),
                "--reuse", "init", "--episodes", "2", "--source-episodes", "2", *self.TINY, "--json"] \
            + (["--resume"] if resume else [])


def check_finished_store(exp: TuneExperiment, resumed_trials: list[Path]) -> None:
    """The store after a completed (resumed) run: parent FINISHED, nothing RUNNING, one FINISHED
    child per trial (the one its DONE.json names), curves from step 0, summaries on the transfers."""
    c = exp.client()
    parent_id = exp.parent_run_id()
    runs = exp.runs_of_experiment()
    assert [(r.info.run_name, r.info.run_id) for r in runs if r.info.status == "RUNNING"] == []
    parent = c.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags.get("kind") == "experiment"
    assert "report" in [a.path for a in c.list_artifacts(parent_id)]
    children = [r for r in runs if r.info.run_id != parent_id]
    assert children and all(r.data.tags.get("mlflow.parentRunId") == parent_id for r in children), \
        [(r.info.run_name, r.data.tags.get("mlflow.parentRunId")) for r in children]
    assert {r.data.tags.get("reuse_mode") for r in children} == MODES
    # A child that is not the trial's final run is one a killed trial left behind, now KILLED.
    assert {r.info.status for r in children} <= {"FINISHED", "KILLED"}

    for mode, folder in exp.expected_trials().items():
        done = json.loads((folder / "DONE.json").read_text())
        finished = [r for r in children if r.data.tags.get("reuse_mode") == mode and r.info.status == "FINISHED"]
        assert [r.info.run_id for r in finished] == [done["run_id"]], (mode, done["run_id"], finished)
        child = finished[0]
        assert child.info.run_name == folder.name, (child.info.run_name, folder)
        assert child.data.tags["kind"] == ("source" if mode == "source" else "transfer")
        if folder in resumed_trials:
            # it continued from its checkpoint, in the same MLflow run
            assert done.get("resumed_at"), f"{folder.name} was not resumed from its checkpoint: {sorted(done)}"
            assert [r.info.run_id for r in children if r.info.run_name == folder.name] == [done["run_id"]]
        steps = [m.step for m in c.get_metric_history(child.info.run_id, "eval_return")]
        assert 0 in steps and len(set(steps)) >= 2, (mode, steps)
        metrics = child.data.metrics
        assert max(steps) == metrics["target_steps"] and "final_return" in metrics, (mode, steps, metrics)
        if mode not in ("none", "source"):
            missing = [k for k in SUMMARY_METRICS if k not in metrics]
            assert not missing, f"{mode}: summary metrics {missing} not logged"


def test_ctrl_c_then_sigkill_then_resume_keeps_finished_trials(tmp_path):
    """One experiment, interrupted twice: Ctrl-C, then SIGKILL of the resumed run, then a resume
    that finishes it (one experiment, not two: the suite has a 15-minute budget)."""
    exp = TuneExperiment(tmp_path)
    try:
        exp.start()
        # A finished trial (the source) and target trials part-way through: Ctrl-C now.
        exp.wait_for(lambda: exp.done_mtimes(), "DONE.json")
        exp.wait_for(exp.transfer_in_progress, "target trial with a checkpointed evaluation")
        in_progress = exp.transfer_in_progress()
        exp.signal_group(signal.SIGINT)                  # what Ctrl-C in a terminal does
        code = exp.wait(300)
        assert code == 130, f"exit {code} after SIGINT:\n{exp.stderr_tail()}"
        left = wait_until_gone(exp.marks)
        assert not left, f"processes left running after Ctrl-C: {left}"
        runs = exp.runs_of_experiment()
        assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
        assert exp.client().get_run(exp.parent_run_id()).info.status == "KILLED"
        before = exp.done_mtimes()
        assert before

        # Resume; once a target trial has checkpointed again, SIGKILL the driver and its Ray node
        # at once (one group); Ray's workers, each a group of its own, are found by this run's marks.
        states = {p: p.stat().st_mtime_ns for p in exp.root.glob("trials/*/run.json")}

        def checkpointed_again() -> bool:
            return any(p.stat().st_mtime_ns != states.get(p) for p in exp.root.glob("trials/*/run.json")
                       if not (p.parent / "DONE.json").exists())

        exp.start(resume=True)
        exp.wait_for(checkpointed_again, "a target trial's checkpoint after the resume")
        in_progress += [t for t in exp.transfer_in_progress() if t not in in_progress]
        exp.signal_group(signal.SIGKILL)
        exp.wait(60)
        kill_marked(exp.marks)
        assert processes_marked(exp.marks) == []
        assert exp.client().get_run(exp.parent_run_id()).info.status == "RUNNING", "the kill came too late"
        killed_done = exp.done_mtimes()
        assert {p: killed_done.get(p) for p in before} == before, "a trial finished before Ctrl-C was rerun"

        exp.run_to_completion(resume=True)
        after = exp.done_mtimes()
        assert {p: after.get(p) for p in killed_done} == killed_done, "a trial finished before the kill was rerun"
        assert sorted(after) == sorted(folder / "DONE.json" for folder in exp.expected_trials().values())
        check_finished_store(exp, resumed_trials=in_progress)
        left = wait_until_gone(exp.marks)
        assert not left, f"processes left running after the resumed run: {left}"
    finally:
        exp.cleanup()
