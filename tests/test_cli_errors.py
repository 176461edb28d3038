"""A user's mistake on the serving and cluster commands: one error line naming the field, exit 2,
no traceback, and nothing started (no Ray, no Serve)."""
from __future__ import annotations

import socket

import pytest

from cluster.cli import main


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def empty_topology(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text("nodes: []\n")
    return str(path)


def run_cli(capsys, *argv) -> str:
    """main() writes --address into os.environ; conftest's isolated_home puts it back after the test."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_serve_rejects_a_bad_topology_before_ray_starts(capsys, empty_topology):
    import ray

    err = run_cli(capsys, "serve", "--topology", empty_topology)
    assert err.startswith("aigc-edge serve: error:") and "nodes" in err and "at least 1" in err
    assert not ray.is_initialized()


def test_serve_names_a_missing_topology_file(capsys, tmp_path):
    err = run_cli(capsys, "serve", "--topology", str(tmp_path / "nowhere.yaml"))
    assert "nowhere.yaml" in err and "does not exist" in err


def test_loadtest_says_when_no_endpoint_answers(capsys):
    err = run_cli(capsys, "loadtest", "--no-mlflow", "--requests", "1", "--url", f"http://127.0.0.1:{unused_port()}")
    assert err.startswith("aigc-edge loadtest: error: url: no endpoint answers") and "aigc-edge serve" in err


def test_submit_needs_a_command(capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"http://127.0.0.1:{unused_port()}")
    err = run_cli(capsys, "submit")
    assert err.startswith("aigc-edge submit: error: command:")


def test_submit_names_an_address_with_no_job_server(capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"http://127.0.0.1:{unused_port()}")
    err = run_cli(capsys, "submit", "--", "train", "--scenario", "dedgeai")
    assert err.startswith("aigc-edge submit: error: address: no Ray job server answers") and "8265" in err


@pytest.mark.parametrize("address, message", [
    (None, "nothing answers at"),
    ("http://127.0.0.1:8265", "is a URL"),
    ("head-without-port", "is not HOST:PORT"),
])
def test_serve_names_a_ray_address_it_cannot_join(capsys, address, message):
    import ray

    err = run_cli(capsys, "serve", "--address", address or f"127.0.0.1:{unused_port()}")
    assert err.startswith("aigc-edge serve: error: address:") and message in err
    assert not ray.is_initialized()
