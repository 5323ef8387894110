"""The running console in a real browser: headless Chromium loads it and saves screenshots.

Starts ``streamlit run dashboards/app.py`` on a free port against a copy of the demo store (with the
simulator's campaigns and a few decisions, one of them reversed), drives Debian's ``chromium`` over
the DevTools protocol (``websockets``, which Streamlit already depends on), waits until each page has
finished rendering, and saves ``queue.png``, ``post.png``, ``account.png``, ``campaign.png`` (and
``hostile-post.png``, ``overview.png``) to ``$CHORUS_ARTIFACTS`` (default ``tests/artifacts/console``)
for CI to keep; ``dashboards/screenshots/`` holds copies for the README. It also proves in the
browser what the AppTest tests prove on the element tree: a post carrying ``<script>`` and
``onerror`` runs nothing. And it measures what only a browser can: on a laptop screen
(:data:`FIRST_SCREEN`, 1440x900) the decision panel's submit button is on the first screen of a post
and of a campaign, with a statement template to pick and, on a post, after one is picked and after its
placeholders are filled in (neither what is left to fill in nor the statement as it will be sent may
push it down), and the panel, taller than the window, scrolls instead of squashing its statement box;
``/`` focuses the quick search, which opens a case at its top however far the last one was scrolled;
the overview's precision table shows all its columns.

Skipped, with the reason, where Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
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

from stream.review.decisions import decide
from stream.review.notes import add_note
from stream.review.reversal import reverse
from stream.review.templates import save_template
from stream.store.database import Store
from stream.store.reviewers import Reviewer

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium); the browser screenshots need it",
)
WIDTH, HEIGHT = 1500, 1100
#: The screen the decision panel must fit on without scrolling: a common laptop's browser window.
FIRST_SCREEN = (1440, 900)


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
def console_url(demo_store: Path, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """The console served by ``streamlit run`` on a free port, on a copy of the demo store, as ``chorus console``
    starts it (no Deploy button in the screenshots); a flag in it and the account behind that flag.

    Three other flags are decided (two confirmed, one dismissed) and one more decided and reversed, so
    the overview has precision and decisions by reviewer to show. Two team notes on the flag make its
    decision panel taller than a laptop's window (it scrolls within itself). A lead's statement template for any
    case, with three ``[[...]]`` to fill in, puts the template picker in the decision panels, whose submit
    button must still be on the first screen, before a template is picked and after.
    """
    with Store.open(str(demo_store)) as store:
        add_simulated_campaigns(store)
        write_flagged_post(store, "evil-1", HOSTILE, "hostile-account", {"phrases": ["<b>html</b>"]})
        first = store.frame("flags", where="detector = 'llm_boilerplate'", limit=1)
        flag, account = first["flag_id"][0], first["account_id"][0]
        others = [f for f in store.frame("flags", where="status = 'open'")["flag_id"].to_list() if f != flag][-4:]
        bob = Reviewer("bob@example.org", "reviewer")
        decide(store, bob, others[:2], "confirm", "undisclosed_ai_text")
        decide(store, bob, others[2:3], "dismiss", "false_positive")
        for note in ("Same wording as three other accounts this week.", "Checked the link: a content farm."):
            assert add_note(store, bob, "flag", flag, note).ok  # open in the panel: taller than the window
        wrong = decide(store, bob, others[3:], "confirm", "spam").decision_ids[others[3]]
        reverse(store, bob, [wrong], "reviewer_error", "Misclick.")
        save_template(
            store, Reviewer("lee@example.org", "lead"), name="Machine-written, undisclosed",
            body="Your post {post_id} was labelled ({reason}): [[what gave it away]]; "
            "[[which account it copies, if any]]. See [[the policy section]].",
            reason_code="undisclosed_ai_text",
        )  # fmt: skip
    port = _free_port()
    log = (tmp_path / "streamlit.log").open("wb")
    env = {**os.environ, "CHORUS_REVIEWER": "alice@example.org", "CHORUS_REVIEWER_ROLE": "reviewer"}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboards" / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--client.toolbarMode", "viewer", "--", "--store", str(demo_store)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok", "streamlit")
        yield url, flag, account
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


#: The element the page scrolls in: Streamlit's main area where it scrolls, else the document.
SCROLLER = (
    "([...document.querySelectorAll('[data-testid=stMain], [data-testid=stAppViewContainer]')]"
    ".find(e => e.scrollHeight > e.clientHeight && getComputedStyle(e).overflowY !== 'visible')"
    " || document.scrollingElement)"
)


#: A button's label as a person reads it: its Markdown, without the shortcut hint Streamlit draws beside it.
BUTTON_LABEL = "(b.querySelector('[data-testid=stMarkdownContainer]') || b).innerText.trim()"


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

    def viewport(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        time.sleep(0.5)  # Streamlit lays the columns out again

    def press(self, key: str) -> None:
        """One printable key, as a person types it (keydown with its text, keyup)."""
        self.call("Input.dispatchKeyEvent", type="keyDown", key=key, text=key, unmodifiedText=key)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key)

    def type_and_enter(self, text: str) -> None:
        self.call("Input.insertText", text=text)
        self.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", windowsVirtualKeyCode=13,
                  text="\r")  # fmt: skip
        self.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)

    def wait_rendered(self, expect: str) -> str:
        """Wait until the page shows ``expect`` and Streamlit has stopped running (after a click or a key)."""

        def rendered() -> str | None:
            state = json.loads(self.evaluate(
                "JSON.stringify({text: document.body ? document.body.innerText : '',"
                " busy: !!document.querySelector('[data-testid=stStatusWidget], [data-testid=stSkeleton]')})"
            ))  # fmt: skip
            return state["text"] if expect in state["text"] and not state["busy"] else None

        text = _wait_for(rendered, repr(expect), timeout=60)
        time.sleep(1.0)  # charts draw after the script finishes
        return str(text)

    def button_box(self, label: str, within: str = "body") -> tuple[float, float]:
        """Where the button labelled ``label`` starts and ends, in pixels from the top of the window (its
        label is the button's Markdown; the shortcut hint Streamlit draws beside it is not part of it)."""
        found = json.loads(self.evaluate(
            f"(() => {{ const buttons = [...document.querySelectorAll({json.dumps(within + ' button')})];"
            f" const label = b => {BUTTON_LABEL};"
            f" const b = buttons.find(b => label(b) === {json.dumps(label)});"
            " if (!b) return JSON.stringify(buttons.map(label));"
            " const box = b.getBoundingClientRect(); return JSON.stringify([box.top, box.bottom]); })()"
        ))  # fmt: skip
        assert len(found) == 2 and all(isinstance(v, int | float) for v in found), (
            f"no button {label!r} in {within}; its buttons: {found}"
        )
        return float(found[0]), float(found[1])

    def click(self, element: str, what: str) -> None:
        """A person's click (mouse moved, pressed, released) in the middle of the element the JavaScript
        expression ``element`` finds, where it is on screen now (nothing is scrolled to reach it)."""
        found = json.loads(self.evaluate(
            f"(() => {{ const e = {element}; if (!e) return 'null'; const b = e.getBoundingClientRect();"
            " return JSON.stringify([b.left + b.width / 2, b.top + b.height / 2]); })()"
        ))  # fmt: skip
        assert found, f"nothing to click: {what}"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=found[0], y=found[1], button="left", clickCount=1)

    def click_button(self, label: str, within: str = "body") -> None:
        """Click the button labelled ``label`` (its Markdown, as :meth:`button_box` reads it) in ``within``."""
        buttons = f"[...document.querySelectorAll({json.dumps(within + ' button')})]"
        self.click(f"{buttons}.find(b => {BUTTON_LABEL} === {json.dumps(label)})", f"the button {label!r}")

    def choose(self, box: str, option: str) -> None:
        """In the select box labelled ``box``, once it can be used, choose the option that starts with ``option``;
        wait until the page has rerun with it chosen."""
        picker = (
            "[...document.querySelectorAll('[data-testid=stSelectbox]')]"
            f".find(s => s.innerText.includes({json.dumps(box)}))"
        )
        field = f"({picker} || document).querySelector('input')"
        _wait_for(lambda: self.evaluate(f"!!{picker} && !{field}.disabled"), f"the select box {box!r}", timeout=30)
        self.click(field, f"the select box {box!r}")
        item = (
            "[...document.querySelectorAll('[role=option]')]"
            f".find(o => o.innerText.trim().startsWith({json.dumps(option)}))"
        )
        _wait_for(lambda: self.evaluate(f"!!{item}"), f"the option {option!r}", timeout=10)
        self.click(item, f"the option {option!r}")
        chosen = f"{field}.value.startsWith({json.dumps(option)})"
        _wait_for(lambda: self.evaluate(f"!!{picker} && {chosen}"), f"{option!r} chosen in {box!r}", timeout=30)
        self.settle()

    def settle(self) -> None:
        """Wait until Streamlit has stopped running, nothing is left open and no tooltip hangs over the page."""
        self.wait_rendered("")
        self.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape", windowsVirtualKeyCode=27)
        self.call("Input.dispatchKeyEvent", type="keyUp", key="Escape", code="Escape", windowsVirtualKeyCode=27)
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=1, y=1)
        time.sleep(0.5)

    def pick_template(self, panel: str, name: str) -> str:
        """Open the decision panel's *Template* popover, choose the template whose label starts with ``name``,
        and wait until the page has rerun with its statement in the panel's statement box; the statement."""
        self.click_button("Template", within=panel)
        self.choose("Statement template", name)
        box = f"document.querySelector('{panel} textarea')"
        statement = _wait_for(lambda: self.evaluate(f"{box} && {box}.value.includes('[[') && {box}.value"),
                              "the template's statement in the box", timeout=30)  # fmt: skip
        return str(statement)

    def write_statement(self, panel: str, statement: str) -> None:
        """Replace what the panel's statement box holds with ``statement``, as typed, and leave the box (which
        sends it); wait until the page has rerun and no longer says that anything is left to fill in."""
        box = f"document.querySelector('{panel} textarea')"
        self.click(box, "the statement box")
        self.evaluate(f"{box}.select()")
        self.call("Input.insertText", text=statement)
        self.click(f"document.querySelector('{panel} h2, {panel} h3')", "the panel's heading")  # the box loses focus
        left = "document.body.innerText.toLowerCase().includes('to fill in')"
        _wait_for(lambda: not self.evaluate(left), "nothing left to fill in", timeout=30)
        self.settle()

    def squashed(self, panel: str) -> str | None:
        """None when the panel's statement box (its label and text area) is drawn at its full height, else how
        much of it shows: in a panel taller than the window, the box must not give up its height."""
        heights = json.loads(self.evaluate(
            f"(() => {{ const box = document.querySelector('{panel} [data-testid=stTextArea]');"
            " if (!box) return 'null'; const holder = box.closest('[data-testid=stElementContainer]') || box;"
            " return JSON.stringify([holder.getBoundingClientRect().height, box.scrollHeight]); })()"
        ))  # fmt: skip
        assert heights, f"no statement box in {panel}"
        shown, whole = heights
        return None if shown >= whole - 1 else f"the statement box in {panel} shows {shown:.0f} of its {whole:.0f} px"

    def on_first_screen(self, label: str, within: str = "body") -> str | None:
        """None when the button ``label`` is wholly on the first screen (:data:`FIRST_SCREEN`), else where it is."""
        self.viewport(*FIRST_SCREEN)
        top, bottom = self.button_box(label, within)
        height = self.evaluate("window.innerHeight")
        self.viewport(WIDTH, HEIGHT)
        if bottom <= height:
            return None
        return f"{label!r} spans {top:.0f}-{bottom:.0f} px of a {FIRST_SCREEN[0]}x{height} window"

    def scrolled(self) -> float:
        """How far the page's scrolling area is scrolled down, in pixels."""
        return float(self.evaluate(f"{SCROLLER}.scrollTop"))

    def open(self, url: str, expect: str) -> str:
        """Load ``url`` and wait until the page shows ``expect`` and Streamlit has stopped running."""
        self.call("Page.navigate", url=url)
        return self.wait_rendered(expect)

    def screenshot(self, path: Path) -> None:
        """The whole page: the viewport grows to the height of Streamlit's scrolling main area."""
        height = self.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=stMain], section')]"
                               ".map(e => e.scrollHeight), window.innerHeight)")  # fmt: skip
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=min(int(height), 6000),
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        time.sleep(0.5)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def first_screen(self, path: Path) -> None:
        """What the window shows without scrolling (the viewport only)."""
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

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


def test_console_in_headless_chromium_with_screenshots(console_url: tuple[str, str, str], chromium: Chromium) -> None:
    url, flag, account_id = console_url
    artifacts = Path(os.environ.get("CHORUS_ARTIFACTS") or REPO / "tests" / "artifacts" / "console")
    artifacts.mkdir(parents=True, exist_ok=True)

    queue = chromium.open(f"{url}/", "flags match")
    assert "Flag queue" in queue and "alice@example.org" in queue
    chromium.screenshot(artifacts / "queue.png")

    post = chromium.open(f"{url}/post?flag={flag}", "Why it was flagged")
    assert flag.split(":", 1)[1] in post
    chromium.viewport(*FIRST_SCREEN)
    chromium.first_screen(artifacts / "post-first-screen.png")
    # Measured, then asserted at the end: every screenshot is taken even when one measure fails.
    chromium.button_box("Template", within=".st-key-post-action-panel")  # the store's template is offered
    off_screen = [chromium.on_first_screen("Submit", within=".st-key-post-action-panel")]
    squashed = [chromium.squashed(".st-key-post-action-panel")]
    assert "Team notes (2)" in post, "the notes make the panel taller than the window"
    chromium.screenshot(artifacts / "post.png")

    # "/" focuses the quick search on any page; what it opens starts at its top, not where this post was scrolled
    chromium.evaluate(f"{SCROLLER}.scrollTop = 700")
    assert chromium.scrolled() > 0, "the post is long enough to scroll"
    chromium.press("/")
    focused = "!!(document.activeElement && document.activeElement.closest('.st-key-quick-search'))"
    _wait_for(lambda: chromium.evaluate(focused), "/ to focus the quick search", timeout=10)
    other = "aitext:evil-1"
    chromium.type_and_enter(other)
    hostile = chromium.wait_rendered("<script>window.__pwned = 1</script>")
    assert "Why it was flagged" in hostile
    assert chromium.scrolled() == 0, "the case the search opened starts at its top"

    assert "<script>window.__pwned = 1</script>" in hostile, "the script is on screen as text"
    assert chromium.evaluate("window.__pwned === undefined"), "and it never ran"
    assert chromium.evaluate('document.querySelectorAll(\'img[src="x"], a[href^="https://evil"]\').length') == 0
    chromium.screenshot(artifacts / "hostile-post.png")

    # A reviewer's way through the panel: a decision, its reason code, a template with three [[...]] to fill in,
    # then those filled in (the statement as it will be sent differs: {reason} is filled). At each step the
    # submit button is still on the first screen.
    panel = ".st-key-post-action-panel"
    chromium.open(f"{url}/post?flag={flag}", flag)  # the decision panel names the case
    chromium.viewport(*FIRST_SCREEN)
    chromium.click_button("Confirm", within=panel)
    chromium.choose("Reason code", "undisclosed_ai_text")
    statement = chromium.pick_template(panel, "Machine-written, undisclosed")
    assert statement.startswith("Your post ") and statement.count("[[") == 3, statement
    chromium.first_screen(artifacts / "post-template-first-screen.png")
    off_screen.append(chromium.on_first_screen("Submit", within=panel))
    squashed.append(chromium.squashed(panel))
    chromium.viewport(*FIRST_SCREEN)
    filled = re.sub(r"\[\[[^]]*\]\]", "the phrasing of a chatbot's answer", statement)
    chromium.write_statement(panel, filled)
    chromium.first_screen(artifacts / "post-statement-first-screen.png")
    off_screen.append(chromium.on_first_screen("Submit", within=panel))
    squashed.append(chromium.squashed(panel))

    account = chromium.open(f"{url}/account?account={account_id}", "Machine share over time")
    assert account_id in account
    chromium.screenshot(artifacts / "account.png")

    campaign = chromium.open(f"{url}/campaign?campaign=sim-campaign_0", "Links and their evidence")
    assert "sim-campaign_0" in campaign
    assert chromium.evaluate("document.querySelectorAll('canvas, svg.marks').length") >= 1, "the graph is drawn"
    chromium.viewport(*FIRST_SCREEN)
    chromium.first_screen(artifacts / "campaign-first-screen.png")
    chromium.button_box("Template", within=".st-key-campaign-action-panel")
    off_screen.append(chromium.on_first_screen("Decide campaign"))
    chromium.screenshot(artifacts / "campaign.png")

    chromium.open(f"{url}/overview", "Decisions by reviewer")
    fit = chromium.evaluate(
        "(() => { const s = document.querySelector('.st-key-overview-precision .dvn-scroller');"
        " return s ? [s.scrollWidth, s.clientWidth] : null; })()"
    )
    assert fit is not None, "the precision table is drawn"
    assert fit[0] <= fit[1] + 1, f"the precision table needs {fit[0]} px in {fit[1]}: a column is cut off"
    chromium.screenshot(artifacts / "overview.png")

    for name in ("queue.png", "post.png", "account.png", "campaign.png", "hostile-post.png", "overview.png"):
        assert (artifacts / name).stat().st_size > 20_000, f"{name} is a real screenshot, not a blank page"
    below = [where for where in off_screen if where]
    assert not below, f"the decision panel's submit button is below the first screen: {below}"
    assert not [what for what in squashed if what], f"the decision panel squashes its statement box: {squashed}"
