"""The MLflow UI on a finished transfer experiment, in headless Chromium driven over the DevTools
protocol: the parent run lists its trials as nested child runs, the runs group by the `reuse_mode`
tag, and the `eval_return` / `jumpstart` metrics and `reuse_mode` values are the store's.

The store is a real one: the tiny experiment of tests/test_tune_resume.py, run once by
`aigc-edge tune`. The UI is `aigc-edge ui` (cluster/commands/ui.py), stopped as a user stops it
(SIGTERM: it takes its MLflow process group down). What MLflow 3.17's runs table shows is in
/work/shared/notes/transfer-anchors.md, section 6; the selectors below are its bundled JS's.
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from test_tune_resume import aigc_edge_command, kill_marked, wait_until_gone

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400),
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make setup as root: "
                                                          "apt-get install chromium); the UI test needs it")]

pytest.importorskip("websockets.sync.client", reason="the DevTools client needs websockets >= 11 (Ray Serve's)")

ROOT = Path(__file__).resolve().parents[1]
# The runs table's expander of a parent run (an icon-only button: its component id is all it has).
EXPANDER = "button[data-component-id$='runnamecellrenderer.tsx_46']"
COLUMN_SELECTOR = "[data-component-id='mlflow.experiment_page.runs_table.column_selector']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def finished_experiment(finished_transfer):
    """The transfer the CLI test ran (conftest: one per session): the source, scratch and init."""
    return finished_transfer


@pytest.fixture
def mlflow_ui(finished_experiment, tmp_path):
    """`aigc-edge ui` on the experiment's store, on a free port; -> its URL."""
    exp, _ = finished_experiment
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        ui = subprocess.Popen([*aigc_edge_command(), "ui", "--port", str(port)], cwd=ROOT, env=exp.env,
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if ui.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the MLflow UI did not come up (exit {ui.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        if ui.poll() is None:
            ui.send_signal(signal.SIGTERM)          # its handler stops MLflow's process group
            try:
                ui.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        # MLflow's server and workers carry the experiment's home in their environment.
        left = wait_until_gone(exp.marks, timeout_s=30)
        kill_marked(exp.marks)
    assert not left, f"MLflow processes left after `aigc-edge ui` got SIGTERM: {left}"


def os_killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol (a websocket)."""

    def __init__(self, profile: Path, width: int = 2000, height: int = 1100):
        from websockets.sync.client import connect

        self.profile = profile
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 90
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"Chromium did not open its DevTools port (exit {self.proc.poll()})")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        pages = []
        while not pages:                    # the port file can come before the endpoint answers
            try:
                pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
                         if t["type"] == "page"]
            except httpx.HTTPError:
                pass
            if not pages and time.monotonic() > deadline:
                self.close()
                raise RuntimeError("Chromium's DevTools endpoint lists no page")
            time.sleep(0.2)
        # Entered as a context manager would be (websockets >= 17.1 warns otherwise); closed in close().
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2 ** 20, open_timeout=30).__enter__()
        self.ids = itertools.count(1)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, timeout_s: float = 60, **params) -> dict:
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == i:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:200]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expression: str, what: str, timeout_s: float = 90):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.js(f"(() => {{ const v = ({expression}); return v ? (typeof v === 'object' ? true : v) : null; }})()")
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"the page never showed {what}; it shows:\n{self.text()[:3000]}")

    def text(self) -> str:
        return self.js("document.body ? document.body.innerText : ''") or ""

    def click(self, element: str, what: str) -> None:
        """A real mouse click (Radix menus open on pointer events, not on element.click())."""
        box = self.js(f"(() => {{ const e = ({element}); if (!e) return null; e.scrollIntoView({{block: 'center'}});"
                      " const b = e.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; })()")
        assert box, f"no {what} to click; the page shows:\n{self.text()[:3000]}"
        x, y = box
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)

    def escape(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Escape", code="Escape", windowsVirtualKeyCode=27)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        os_killpg(self.proc.pid)
        self.proc.wait(timeout=30)
        kill_marked([str(self.profile)])


def by_text(selector: str, text: str) -> str:
    return f"[...document.querySelectorAll({json.dumps(selector)})].find(e => e.innerText.trim() === {json.dumps(text)})"


def link_to(experiment_id: str, run_id: str) -> str:
    return f"document.querySelector('a[href$=\"#/experiments/{experiment_id}/runs/{run_id}\"]')"


def rows(browser: Chromium) -> dict[str, dict[str, str]]:
    """The runs table's rows by row index: {column id: text} (AG Grid splits a row between its
    pinned-left and centre containers; both carry the row index)."""
    return browser.js("""(() => {
        const out = {};
        for (const row of document.querySelectorAll('.ag-row')) {
            const i = row.getAttribute('row-index');
            out[i] = out[i] || {};
            for (const cell of row.querySelectorAll('[col-id]')) out[i][cell.getAttribute('col-id')] = cell.innerText.trim();
        }
        return out; })()""")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_runs_page_nests_trials_under_the_parent_and_groups_by_reuse_mode(finished_experiment, mlflow_ui, tmp_path):
    import numpy as np
    from matplotlib.image import imread

    exp, result = finished_experiment
    c = exp.client()
    experiment_id = c.get_experiment_by_name("aigc-edge/transfer").experiment_id
    parent_id = result["parent_run_id"]
    runs = exp.runs_of_experiment()
    # Every other run is a trial (the source, scratch and init): the page must nest them all.
    children = [r for r in runs if r.info.run_id != parent_id]
    assert len(children) == 3, [r.info.run_name for r in runs]
    parent_name = c.get_run(parent_id).info.run_name

    browser = Chromium(tmp_path / "chromium-profile")
    try:
        browser.call("Page.navigate", url=f"{mlflow_ui}/#/experiments/{experiment_id}/runs")
        browser.wait(link_to(experiment_id, parent_id), "the parent run's link", timeout_s=180)
        assert browser.js(f"{link_to(experiment_id, parent_id)}.innerText.trim()") == parent_name
        assert browser.wait(f"/{len(runs)} matching runs/.test(document.body.innerText)", f"{len(runs)} matching runs")
        assistant = "document.querySelector('[data-component-id=\"mlflow.assistant.chat_panel.close\"]')"
        if browser.js(f"!!{assistant}"):
            browser.click(assistant, "the assistant panel's close button")     # room for the table

        # Collapsed: the children are not top-level rows; one expander, on the parent's row.
        shown = [r.info.run_name for r in children if browser.js(f"!!{link_to(experiment_id, r.info.run_id)}")]
        assert shown == [], f"child runs listed at the top level (not nested under the parent): {shown}"
        assert browser.js(f"document.querySelectorAll(\"{EXPANDER}\").length") == 1
        assert browser.js(f"""(() => {{ const b = document.querySelector("{EXPANDER}");
            const row = b && b.closest('.ag-row'); const i = row && row.getAttribute('row-index');
            return [...document.querySelectorAll(`.ag-row[row-index="${{i}}"] a`)].some(
                a => a.getAttribute('href').endsWith('/runs/{parent_id}')); }})()"""), "the expander is not the parent's"

        browser.click(f"document.querySelector(\"{EXPANDER}\")", "the parent's child-runs expander")
        for r in children:
            browser.wait(link_to(experiment_id, r.info.run_id), f"child run {r.info.run_name}")
            assert browser.js(f"{link_to(experiment_id, r.info.run_id)}.innerText.trim()") == r.info.run_name
        # Nested: every child's name is indented to the right of the parent's.
        left = lambda run_id: browser.js(f"{link_to(experiment_id, run_id)}.getBoundingClientRect().left")
        parent_left = left(parent_id)
        assert all(left(r.info.run_id) > parent_left + 8 for r in children), "children are not indented"

        # The reuse_mode tag and the eval_return / jumpstart metrics as columns.
        browser.click(by_text("button", "Columns"), "the Columns button")
        browser.wait(f"document.querySelector(\"{COLUMN_SELECTOR} [role=tree]\")", "the column selector")
        for name in ("eval_return", "jumpstart", "reuse_mode"):
            browser.click(by_text(f"{COLUMN_SELECTOR} .du-bois-light-tree-title", name), f"column {name}")
            browser.wait(f"document.querySelector('.ag-header-cell[col-id$=\"`{name}`\"]')", f"the {name} column")
        browser.escape()
        table = rows(browser)
        by_name = {}
        for cells in table.values():
            name = cells.get("attributes.`Run Name`", "").replace("\n", " ").strip()
            if name:
                by_name[name.split()[-1]] = cells
        for r in children:
            cells = by_name.get(r.info.run_name)
            assert cells is not None, f"{r.info.run_name} not in the table: {sorted(by_name)}"
            assert cells["tags.`reuse_mode`"] == r.data.tags["reuse_mode"], (r.info.run_name, cells)
            assert float(cells["metrics.`eval_return`"]) == pytest.approx(r.data.metrics["eval_return"], rel=1e-6)
            if "jumpstart" in r.data.metrics:
                assert float(cells["metrics.`jumpstart`"]) == pytest.approx(r.data.metrics["jumpstart"], rel=1e-6, abs=1e-9)
        assert {r.data.tags["reuse_mode"] for r in children if "jumpstart" in r.data.metrics} == {"init"}

        # Group by the reuse_mode tag: one group per mode; the parent (untagged) is apart.
        browser.click(by_text("button", "Group by"), "the Group by button")
        browser.wait("document.querySelector('[role=menu]')", "the Group by menu")
        browser.click(by_text("[role=menu] [role=menuitemcheckbox]", "reuse_mode"), "Group by > Tags > reuse_mode")
        browser.escape()
        browser.wait(by_text("button", "Group by: reuse_mode"), "Group by: reuse_mode")
        for mode in sorted({r.data.tags["reuse_mode"] for r in children}):
            browser.wait(by_text("span", f"Group: {mode}"), f"the group of reuse_mode {mode}")
        groups = browser.js("[...document.querySelectorAll('span')].map(e => e.innerText.trim())"
                            ".filter(t => t.startsWith('Group: '))")
        assert sorted(groups) == sorted(f"Group: {r.data.tags['reuse_mode']}" for r in children), groups
        assert browser.js(f"/Additional runs/.test(document.body.innerText)"), "the untagged parent is not set apart"

        shot = browser.screenshot(tmp_path / "mlflow-transfer-runs.png")
    finally:
        browser.close()
    width, height = png_size(shot)
    assert (width, height) == (2000, 1100) and shot.stat().st_size > 30_000, (width, height, shot.stat().st_size)
    pixels = imread(str(shot))[..., :3]
    assert pixels.std() > 0.05 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "a blank screenshot"
