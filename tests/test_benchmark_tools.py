"""The agents benchmark's `--unfinished` report: an unfinished run's checkpointed episodes paired
with greedy on exactly those episodes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The first episodes of a finished run of our runner on the shared form (10 vectorised copies).
JOB = "shared-lad-s0"


@pytest.mark.slow
def test_unfinished_run_is_paired_with_greedy_on_its_own_episodes(benchmark_script, isolated_home, capsys):
    bench = benchmark_script("run")
    saved = json.loads((FIXTURES / f"agents_run_{JOB}.json").read_text())
    # The first 10 episodes as a checkpoint holds them after one round of the 10 copies.
    state = isolated_home / "checkpoints" / f"bench-{JOB}" / "run.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"episodes": saved["episodes_log"][:10]}))

    assert bench.report_unfinished(JOB, [0]) == 0
    out = capsys.readouterr().out
    assert "'decisions_match': True" in out and "'decisions_checked': 10" in out
    run = np.mean([e["mean_delay_s"] for e in saved["episodes_log"][:10]])
    greedy = np.mean([e["mean_delay_s"] for e in saved["greedy_same_episodes"][:10]])
    assert f"episodes 1-10: {run:.2f} s, greedy {greedy:.2f} s, {run / greedy:.3f}x" in out


def test_unfinished_names_the_jobs_and_the_missing_checkpoint(benchmark_script, capsys):
    bench = benchmark_script("run")
    assert bench.report_unfinished("shared-lad-s9", [0]) == 2
    err = capsys.readouterr().err
    assert "no job 'shared-lad-s9'" in err and JOB in err
    assert bench.report_unfinished(JOB, [0]) == 2
    assert "has no checkpoint" in capsys.readouterr().err
