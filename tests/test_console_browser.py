"""The running console in a real browser: headless Chromium loads it and saves screenshots.

Starts ``streamlit run dashboards/app.py`` on a free port against a copy of the demo store (with the
simulator's campaigns), drives Debian's ``chromium`` over the DevTools protocol (``websockets``,
which Streamlit already depends on), waits until each page has finished rendering, and saves
``queue.png``, ``post.png``, ``campaign.png`` (and ``hostile-post.png``) to ``$CHORUS_ARTIFACTS``
(default ``tests/artifacts/console``) for CI to keep. It also proves in the browser what the
AppTest tests prove on the element tree: a post carrying ``<script>`` and ``onerror`` runs nothing.

Skipped, with the reason, where Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_console import HOSTILE, add_simulated_campaigns, write_flagged_post

from stream.store.database import Store

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium); the browser screenshots need it",
)
WIDTH, HEIGHT = 1500, 1100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")


@pytest.fixture
def console_url(demo_store: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The console served by ``streamlit run`` on a free port, on a copy of the demo store; and a flag in it."""
    with Store.open(str(demo_store)) as store:
        add_simulated_campaigns(store)
        write_flagged_post(store, "evil-1", HOSTILE, "hostile-account", {"phrases": ["<b>html</b>"]})
        flag = store.frame("flags", where="detector = 'llm_boilerplate'", limit=1)["flag_id"][0]
    port = _free_port()
    log = (tmp_path / "streamlit.log").open("wb")
    env = {**os.environ, "CHORUS_REVIEWER": "alice@example.org", "CHORUS_REVIEWER_ROLE": "reviewer"}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboards" / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--", "--store", str(demo_store)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok", "streamlit")
        yield url, flag
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


class Chromium:
    """Just enough of the DevTools protocol: navigate, evaluate, resize, screenshot."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        self.process = subprocess.Popen(
            [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        port = int(_wait_for(lambda: port_file.exists() and port_file.read_text().split()[0], "chromium", 30))
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.exits = contextlib.ExitStack()
        self.socket = self.exits.enter_context(connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024))
        self.ids = itertools.count(1)
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        request = next(self.ids)
        self.socket.send(json.dumps({"id": request, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == request:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, expect: str) -> str:
        """Load ``url`` and wait until the page shows ``expect`` and Streamlit has stopped running."""
        self.call("Page.navigate", url=url)

        def rendered() -> str | None:
            state = json.loads(self.evaluate(
                "JSON.stringify({text: document.body ? document.body.innerText : '',"
                " busy: !!document.querySelector('[data-testid=stStatusWidget], [data-testid=stSkeleton]')})"
            ))  # fmt: skip
            return state["text"] if expect in state["text"] and not state["busy"] else None

        text = _wait_for(rendered, f"{expect!r} at {url}", timeout=60)
        time.sleep(1.0)  # charts draw after the script finishes
        return str(text)

    def screenshot(self, path: Path) -> None:
        """The whole page: the viewport grows to the height of Streamlit's scrolling main area."""
        height = self.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=stMain], section')]"
                               ".map(e => e.scrollHeight), window.innerHeight)")  # fmt: skip
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=min(int(height), 6000),
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        time.sleep(0.5)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def close(self) -> None:
        self.exits.close()
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    browser = Chromium(tmp_path / "chromium-profile")  # a fresh profile every time
    try:
        yield browser
    finally:
        browser.close()


def test_console_in_headless_chromium_with_screenshots(console_url: tuple[str, str], chromium: Chromium) -> None:
    url, flag = console_url
    artifacts = Path(os.environ.get("CHORUS_ARTIFACTS") or REPO / "tests" / "artifacts" / "console")
    artifacts.mkdir(parents=True, exist_ok=True)

    queue = chromium.open(f"{url}/", "flags match")
    assert "Flag queue" in queue and "alice@example.org" in queue
    chromium.screenshot(artifacts / "queue.png")

    post = chromium.open(f"{url}/post?flag={flag}", "Why it was flagged")
    assert flag.split(":", 1)[1] in post
    chromium.screenshot(artifacts / "post.png")

    campaign = chromium.open(f"{url}/campaign?campaign=sim-campaign_0", "Links and their evidence")
    assert "sim-campaign_0" in campaign
    assert chromium.evaluate("document.querySelectorAll('canvas, svg.marks').length") >= 1, "the graph is drawn"
    chromium.screenshot(artifacts / "campaign.png")

    hostile = chromium.open(f"{url}/post?flag=aitext:evil-1", "Why it was flagged")
    assert "<script>window.__pwned = 1</script>" in hostile, "the script is on screen as text"
    assert chromium.evaluate("window.__pwned === undefined"), "and it never ran"
    assert chromium.evaluate('document.querySelectorAll(\'img[src="x"], a[href^="https://evil"]\').length') == 0
    chromium.screenshot(artifacts / "hostile-post.png")
    for name in ("queue.png", "post.png", "campaign.png", "hostile-post.png"):
        assert (artifacts / name).stat().st_size > 20_000, f"{name} is a real screenshot, not a blank page"
