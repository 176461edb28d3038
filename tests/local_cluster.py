"""A real two-node Ray cluster on this machine, for tests: `ray start` twice, on ports of its own.

The head has no CPUs (it runs the job server and the drivers), the worker has them, so every task
or actor a job starts runs on the worker node: killing it is losing a node. Token auth is on, with
a token of this cluster's own (RAY_AUTH_TOKEN), so it never reads or writes ~/.ray. Stopping kills
only this cluster's processes (found by their command lines): `ray stop` would kill every Ray on
the machine, other test sessions' included.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
NODE_PORTS = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
              "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")


def processes():
    """(pid, command line) of every process (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class LocalCluster:
    def __init__(self, temp_dir: Path, worker_cpus: int = 2):
        self.temp_dir = Path(temp_dir)
        self.worker_cpus = worker_cpus
        self.gcs_port, self.dashboard_port, self.client_port = free_ports(3)
        self.worker_node_manager_port = 0
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("RAY_ADDRESS", None)

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def job_address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _ray(self, *args: str) -> None:
        proc = subprocess.run([str(BIN / "ray"), *args], env=self.env, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args[:2])} failed:\n{proc.stdout}\n{proc.stderr}")

    @staticmethod
    def _node_ports() -> list[str]:
        """Every port a node opens, each free: two nodes on one machine must not share any."""
        ports = free_ports(len(NODE_PORTS) + 1)
        low = 21000 + (ports[-1] % 400) * 100
        return [f"--{name}={port}" for name, port in zip(NODE_PORTS, ports)] + \
               [f"--min-worker-port={low}", f"--max-worker-port={low + 99}"]

    def start(self) -> "LocalCluster":
        try:
            self._start_nodes()
        except BaseException:
            self.stop()             # a half-started cluster leaves nothing behind either
            raise
        return self

    def _start_nodes(self) -> None:
        self._ray("start", "--head", f"--port={self.gcs_port}", "--num-cpus=0", "--include-dashboard=true",
                  "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                  f"--ray-client-server-port={self.client_port}", f"--temp-dir={self.temp_dir}",
                  *self._node_ports())
        self.start_worker()

    def start_worker(self) -> None:
        ports = self._node_ports()
        self.worker_node_manager_port = int(ports[0].split("=")[1])
        # Its own temp folder: nodes on one machine sharing one would unpack a job's working
        # directory into the same path, and the worker node's set-up deletes the driver's.
        self._ray("start", f"--address={self.gcs_address}", f"--num-cpus={self.worker_cpus}",
                  f"--temp-dir={self.temp_dir}-worker", *ports)
        self.wait_for_nodes(2)

    def wait_for_nodes(self, n: int, timeout_s: float = 60.0) -> None:
        code = ("import ray, sys, time\n"
                "ray.init(address=sys.argv[1], log_to_driver=False)\n"
                f"end = time.time() + {timeout_s}\n"
                f"while sum(x['Alive'] for x in ray.nodes()) != {n} and time.time() < end:\n"
                "    time.sleep(0.5)\n"
                f"sys.exit(0 if sum(x['Alive'] for x in ray.nodes()) == {n} else 1)\n")
        subprocess.run([sys.executable, "-c", code, self.gcs_address], env=self.env, check=True,
                       capture_output=True, timeout=timeout_s + 60)

    def _pids(self) -> list[int]:
        marks = (str(self.temp_dir), f":{self.gcs_port}", f"={self.gcs_port}", f"{self.temp_dir}-worker")
        return [pid for pid, cmd in processes() if pid != os.getpid() and any(m in cmd for m in marks)]

    def kill_worker_node(self) -> list[int]:
        """SIGKILL the worker node's raylet and the processes it started (a node lost); -> the pids."""
        port = str(self.worker_node_manager_port)
        victims = [pid for pid, cmd in processes() if port in cmd and pid != os.getpid()]
        if not victims:
            raise RuntimeError("the worker node is not running")
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        return victims

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self._pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(1.0)

    def leftovers(self) -> list[int]:
        return self._pids()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
