"""The console is safe by default (issue #15, security): what these tests prove.

* Local mode (no identity provider) serves this machine only: ``chorus console --address X`` with a
  non-loopback X and no ``[auth]`` in the Streamlit secrets exits 2 and says how to fix it; the app,
  started by hand on such an address, shows the same refusal and nothing else.
* The store password is in no line the console command prints and on no command line it starts.
* A viewer cannot take post text away: the labelled-decisions export comes without it, a long
  post's full-text download is not offered, the tokens and words behind a detector's call are a plain
  table (no toolbar to download it from); reviewers get all three. The rule is ``auth.can_export_text``.
* Ids and texts with hidden characters (U+202E right-to-left override, U+200B zero-width space)
  are spelt out (``⟨U+202E⟩``) on the pages, in tables and charts.
* The local reviewer comes from the configuration (``[console]``, ``CHORUS_REVIEWER`` /
  ``CHORUS_REVIEWER_ROLE`` as aliases), not from the environment read elsewhere.

The stores here are small SQLite files written through the worker's own write path
(``test_console.write_flagged_post``), so no test needs the demo.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
import streamlit
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options
from test_console import APP, go, texts, write_flagged_post

from dashboards import auth
from dashboards.render import HIDDEN_PATTERN, _is_hidden, plain_table_html, visible, visible_columns
from stream.cli import pipeline
from stream.cli.main import main
from stream.config import REVIEWER_ROLES, ChorusConfig, ConfigError, ConsoleConfig, is_loopback
from stream.review.decisions import decide
from stream.store.database import Store
from stream.store.reviewers import ROLES, Reviewer
from stream.store.tables import TABLES

RLO, ZWSP = "\u202e", "\u200b"
#: Reads as "user-exe.png" on screen without the fix.
RLO_ACCOUNT = f"user-{RLO}gnp.exe"
#: Looks exactly like "trusted-news" without the fix.
ZWSP_ACCOUNT = f"trusted{ZWSP}-news"
CAMPAIGN = f"camp-{RLO}lanigiro"
POSTS = {RLO_ACCOUNT: f"post-{RLO}1", ZWSP_ACCOUNT: f"post-{ZWSP}2"}
TEXT = f"Totally organic opinion {RLO}txt.exe{ZWSP} here."


# ---------------------------------------------------------------------------------------------
# A small store and the app on it


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """Two flagged posts by accounts whose ids hide characters, and a campaign of the two."""
    with Store.open(f"sqlite:///{tmp_path / 'safety.db'}") as opened:
        for account, post_id in POSTS.items():
            write_flagged_post(opened, post_id, TEXT, account, {})
        now = datetime.now(UTC)
        with opened.transaction() as conn:
            conn.execute(
                sa.insert(TABLES["campaigns"]),
                [{"campaign_id": CAMPAIGN, "first_seen": now - timedelta(hours=1), "last_seen": now, "size": 2,
                  "score": 0.8, "status": "open", "summary": {"density": 1.0}}],
            )  # fmt: skip
            conn.execute(
                sa.insert(TABLES["campaign_members"]),
                [{"campaign_id": CAMPAIGN, "account_id": a, "weight": 1.0, "evidence": {}} for a in POSTS],
            )
        yield opened


@pytest.fixture
def console(store: Store, console_opener: Callable[..., Callable[..., AppTest]]) -> Callable[..., AppTest]:
    """``console(role=...)``: the app in local mode as ``ann@example.org`` with that role."""
    return console_opener(store, "ann@example.org")


def shown_strings(at: AppTest) -> list[str]:
    """Every string a person reads on the page: texts, Markdown, captions, messages, choices, table cells."""
    values = [e.value for e in (*at.text, *at.markdown, *at.caption, *at.title, *at.subheader, *at.error,
                                *at.warning, *at.success, *at.info)]  # fmt: skip
    values += [option for box in at.selectbox for option in box.options]
    for table in at.dataframe:
        frame = table.value
        values += [str(v) for column in frame.columns for v in frame[column].tolist()]
    return [str(v) for v in values]


def chart_rows(at: AppTest) -> list[dict[str, Any]]:
    """The data rows of every Vega-Lite chart on the page (what its marks, labels and tooltips show)."""
    rows: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            values = node.get("values")
            if isinstance(values, list):
                rows.extend(v for v in values if isinstance(v, dict))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    for chart in at.get("vega_lite_chart"):
        walk(json.loads(chart.proto.spec))
        # Data given as a frame travels as Arrow bytes beside the spec (top-level or named).
        arrow = [chart.proto.data.data] if chart.proto.HasField("data") else []
        for data in [*arrow, *(d.data.data for d in chart.proto.datasets)]:
            rows += convert_arrow_bytes_to_pandas_df(data).to_dict("records")
    return rows


# ---------------------------------------------------------------------------------------------
# Hidden characters are spelt out


def test_visible_spells_out_what_would_fool_an_analyst() -> None:
    assert visible(RLO_ACCOUNT) == "user-⟨U+202E⟩gnp.exe"
    assert visible(ZWSP_ACCOUNT) == "trusted⟨U+200B⟩-news"
    assert visible("plain id, line\nbreak\tand tab") == "plain id, line\nbreak\tand tab"
    frame = pl.DataFrame({"account_id": ["plain", RLO_ACCOUNT, None], "n": [1, 2, 3]})
    assert visible_columns(frame)["account_id"].to_list() == ["plain", "user-⟨U+202E⟩gnp.exe", None]
    clean = pl.DataFrame({"account_id": ["a", "b"]})
    assert visible_columns(clean) is clean, "nothing hidden: the frame is shown as it is, at no cost"


def test_the_table_prefilter_finds_every_hidden_character() -> None:
    """``visible_columns`` asks polars first; it must not miss a character ``visible`` would spell out."""
    chars = [chr(c) for c in [*range(0xD800), *range(0xE000, 0x10000), 0xE0001, 0xE0020, 0x1D173, 0x110BD]]
    found = pl.Series(chars).str.contains(HIDDEN_PATTERN).to_list()
    missed = [f"U+{ord(c):04X}" for c, hit in zip(chars, found, strict=True) if _is_hidden(c) and not hit]
    assert not missed


def test_ids_and_text_with_hidden_characters_render_visibly(console: Callable[..., AppTest], store: Store) -> None:
    at = go(console(), "campaign", campaign=CAMPAIGN)
    shown = shown_strings(at)
    assert visible(CAMPAIGN) in texts(at)
    members = next(d.value for d in at.dataframe if {"account_id", "weight"} <= set(d.value.columns))
    assert set(members["account_id"]) == {"user-⟨U+202E⟩gnp.exe", "trusted⟨U+200B⟩-news"}
    [account_posts] = [d.value for d in at.dataframe if "text" in d.value.columns or "preview" in d.value.columns]
    assert any("⟨U+202E⟩txt.exe⟨U+200B⟩" in str(v) for column in account_posts for v in account_posts[column])
    rows = chart_rows(at)
    spelt = {"user-⟨U+202E⟩gnp.exe", "trusted⟨U+200B⟩-news"}
    assert {r["account"] for r in rows if "account" in r} == spelt, "graph labels and tooltips"
    assert {r[k] for r in rows if "networks" in r for k in ("source", "target")} == spelt, "graph links"
    assert {r["account_id"] for r in rows if "preview" in r} == spelt, "timeline rows and tooltips"
    leaked = [s for s in shown if RLO in s or ZWSP in s]
    assert not leaked, leaked

    at = go(at, "campaigns")
    assert visible(CAMPAIGN) in at.dataframe[0].value["campaign_id"].tolist()
    assert not [s for s in shown_strings(at) if RLO in s or ZWSP in s]

    flag = f"aitext:{POSTS[RLO_ACCOUNT]}"
    assert decide(store, Reviewer("ann@example.org"), [flag], "confirm", "undisclosed_ai_text").ok
    at = go(console(), "history")
    assert visible(flag) in at.dataframe[0].value["subject_id"].tolist()
    assert not [s for s in shown_strings(at) if RLO in s or ZWSP in s]


# ---------------------------------------------------------------------------------------------
# Viewers see but do not export post text


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    """(label, data) of every download button the pages offer (the bytes are not in AppTest's tree)."""
    offered: list[tuple[str, bytes]] = []
    original = streamlit.download_button

    def spy(label: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        offered.append((label, data if isinstance(data, bytes) else str(data).encode()))
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", spy)
    return offered


def export_columns(data: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(data.decode())))


def test_can_export_text_is_the_one_rule() -> None:
    assert [auth.can_export_text(Reviewer("x", role)) for role in ROLES] == [False, True, True]
    assert auth.can_export_text(None) is False, "outside a session nobody exports"


def test_a_viewer_exports_labelled_decisions_without_post_text(
    console: Callable[..., AppTest], store: Store, downloads: list[tuple[str, bytes]]
) -> None:
    decide(store, Reviewer("ann@example.org"), [f"aitext:{POSTS[ZWSP_ACCOUNT]}"], "confirm", "undisclosed_ai_text")

    go(console(role="viewer"), "history")
    [(label, data)] = downloads
    assert label == "Download labelled decisions without post text (CSV)"
    assert "text" not in export_columns(data) and "Totally organic" not in data.decode()
    assert {"post_id", "label", "score"} <= set(export_columns(data)), "the rest of the export is there"

    downloads.clear()
    at = go(console(role="reviewer"), "history")
    [(label, data)] = downloads
    assert label == "Download labelled decisions (CSV)"
    assert "text" in export_columns(data) and "Totally organic" in data.decode()
    assert not any("Viewers read posts" in c.value for c in at.caption)


def test_a_viewer_is_not_offered_a_long_posts_full_text(
    console: Callable[..., AppTest], store: Store, downloads: list[tuple[str, bytes]]
) -> None:
    flag = write_flagged_post(store, "long-1", "word " * 5_000, "acct-long", {})
    at = go(console(role="viewer"), "post", flag=flag)
    assert not at.get("download_button") and not downloads
    assert any("cannot download their text" in c.value for c in at.caption)
    at = go(console(role="reviewer"), "post", flag=flag)
    assert [d.label for d in at.get("download_button")] == ["Download the full text"]


def tables_with_post_text(at: AppTest) -> list[list[str]]:
    """The columns of every table on the page that shows any of a post's text: each one has a toolbar
    offering "Download as CSV" (and copy), whoever the reviewer is."""
    return [
        list(d.value.columns)
        for d in at.dataframe
        if any("Totally organic" in str(v) for column in d.value for v in d.value[column])
    ]


def test_a_viewer_gets_no_table_with_post_text_to_download(
    console: Callable[..., AppTest], store: Store, downloads: list[tuple[str, bytes]]
) -> None:
    """Streamlit can switch a table's CSV download off only for the whole server, not for one role: so the
    tables a viewer is shown carry no post text at all, on every page that lists posts."""
    now = datetime.now(UTC)
    action = {"action_id": "act-1", "mode": "active", "status": "emitted", "policy_id": "pol", "policy_version": "1",
              "rule_id": "label-ai", "action": "label", "post_id": POSTS[RLO_ACCOUNT], "account_id": RLO_ACCOUNT,
              "params": {"label": "likely machine-written"}, "scores": {}, "evidence": {}, "decided_at": now,
              "worker_id": "w1"}  # fmt: skip
    store.write_batch(posts=[], results=[], flags=[], dead_letters=[], actions=[action])
    pages = {
        "queue": {},
        "post": {"flag": f"aitext:{POSTS[RLO_ACCOUNT]}"},
        "account": {"account": RLO_ACCOUNT},
        "campaign": {"campaign": CAMPAIGN},
        "actions": {},
    }
    for page, params in pages.items():
        reviewer = go(console(role="reviewer"), page, **params)
        assert tables_with_post_text(reviewer), f"{page}: a reviewer's table shows the posts' text"

        viewer = go(console(role="viewer"), page, **params)
        assert not tables_with_post_text(viewer), f"{page}: a viewer's table carries post text"
        assert not [d for d in viewer.dataframe if {"preview", "text"} & set(d.value.columns)], page
        assert any("Without the posts' text" in c.value for c in viewer.caption), f"{page}: the viewer is told why"
        assert not viewer.get("download_button") and not downloads, page
        if page == "post":
            assert any("Totally organic" in t for t in texts(viewer)), "the viewer still reads the post on its page"

    viewer = console(role="viewer")
    [queue] = [d for d in viewer.dataframe if (d.key or "").startswith("q-table")]
    viewer.session_state[queue.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    viewer.run()
    [open_button] = [b for b in viewer.button if b.label == "Open"]
    assert not open_button.disabled, "the viewer's queue still opens a case to read"


#: Evidence naming pieces of TEXT: the tokens a language model found surprising, the words that drove a call.
TOKENS = {"top_surprisal_tokens": [{"token": " organic", "position": 1, "surprisal": 9.25},
                                   {"token": "Totally", "position": 0, "surprisal": 7.5}]}  # fmt: skip
WORDS = {"top_words": [{"word": "opinion", "position": 2, "log_odds": 0.75},
                       {"word": "organic", "position": 1, "log_odds": 0.5}]}  # fmt: skip


@pytest.mark.parametrize(
    ("evidence", "columns", "pieces"),
    [(TOKENS, ["token", "surprisal (nats)", "position"], ["␣organic", "Totally"]),
     (WORDS, ["word", "log-odds towards machine", "word number"], ["opinion", "organic"])],
    ids=["surprising-tokens", "driving-words"],
)  # fmt: skip
def test_a_viewer_reads_the_evidence_words_in_a_table_without_a_download(
    console: Callable[..., AppTest], store: Store, evidence: dict[str, Any], columns: list[str], pieces: list[str]
) -> None:
    """The words and tokens behind a call are the post's text: a reviewer gets them as a table (with its
    toolbar's CSV download), a viewer reads the same rows in a plain table with nothing to download."""
    flag = write_flagged_post(store, "evidence-1", TEXT, "acct-evidence", evidence)

    reviewer = go(console(role="reviewer"), "post", flag=flag)
    [table] = [d.value for d in reviewer.dataframe if columns[0] in d.value.columns]
    assert list(table.columns) == columns and list(table[columns[0]]) == pieces
    assert not [h for h in reviewer.get("html") if "chorus-plain-table" in h.value]

    viewer = go(console(role="viewer"), "post", flag=flag)
    assert not [d for d in viewer.dataframe if set(columns) & set(d.value.columns)], "no table to download"
    cells = [str(v) for d in viewer.dataframe for column in d.value for v in d.value[column]]
    assert not [c for c in cells if any(piece.strip("␣") in c for piece in pieces)], "no evidence word in a table"
    [plain] = [h.value for h in viewer.get("html") if "chorus-plain-table" in h.value and columns[0] in h.value]
    for column in columns:
        assert f"<th>{column}</th>" in plain
    for piece in pieces:
        assert f"<td>{piece}</td>" in plain, "the viewer still reads every word of the evidence"
    assert [h.value for h in viewer.get("html") if "chorus-token" in h.value], "and sees them marked in the text"
    assert any("nothing to download" in c.value for c in viewer.caption), "the viewer is told why"
    assert not viewer.get("download_button")
    # the post's links, hashtags and mentions: a table for the reviewer, plain for the viewer
    assert [d for d in reviewer.dataframe if "field" in d.value.columns]
    assert not [d for d in viewer.dataframe if "field" in d.value.columns]
    assert [h for h in viewer.get("html") if "chorus-plain-table" in h.value and "<td>hashtags</td>" in h.value]


def test_the_plain_table_escapes_what_a_post_wrote() -> None:
    frame = pl.DataFrame({"token": ["<img src=x onerror=alert(1)>", f"txt{RLO}.exe", None], "n": [1.23456, 2.0, None]})
    plain = plain_table_html(frame)
    assert "<img" not in plain and "&lt;img src=x onerror=alert(1)&gt;" in plain
    assert "txt⟨U+202E⟩.exe" in plain and RLO not in plain
    assert "<td>1.235</td>" in plain and "<td>2</td>" in plain and plain.count("<td></td>") == 2


# ---------------------------------------------------------------------------------------------
# Local mode only on loopback


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("", False), (None, False),
     ("192.168.1.20", False), ("review.example.org", False), ("::ffff:10.0.0.1", False)],
)  # fmt: skip
def test_is_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_an_unset_address_is_every_interface_except_in_a_test_run() -> None:
    assert auth.serves_beyond_this_machine(None) and auth.serves_beyond_this_machine("")
    assert not auth.serves_beyond_this_machine(None, server_running=False), "AppTest: nothing listens"
    assert auth.serves_beyond_this_machine("0.0.0.0", server_running=False)
    assert not auth.serves_beyond_this_machine("127.0.0.1")


@pytest.fixture
def console_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Run ``chorus console`` in a clean folder and home (no secrets); Streamlit's start is recorded, not run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("CHORUS_CONFIG", "STREAMLIT_SECRETS_FILES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHORUS_STORE__URL", "postgresql+psycopg://analyst:s3cret-pw@db.example:5432/chorus")
    started: list[list[str]] = []
    monkeypatch.setattr(pipeline.subprocess, "call", lambda cmd, **kwargs: started.append(cmd) or 0)
    return started


def test_local_mode_on_a_network_address_is_refused(
    console_command: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["console", "--address", "0.0.0.0"]) == 2
    out, err = capsys.readouterr()
    assert not console_command, "Streamlit never starts"
    assert "without an identity provider" in err and "--address 127.0.0.1" in err and "[auth]" in err
    assert "secrets.toml" in err and "s3cret-pw" not in out + err


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1"])
def test_local_mode_on_loopback_starts(
    console_command: list[list[str]], capsys: pytest.CaptureFixture[str], address: str
) -> None:
    assert main(["console", "--address", address]) == 0
    [cmd] = console_command
    assert cmd[cmd.index("--server.address") + 1] == address
    out, err = capsys.readouterr()
    assert "analyst:***@" in out and "s3cret-pw" not in out + err + " ".join(cmd)


def test_a_network_address_with_an_identity_provider_starts(console_command: list[list[str]], tmp_path: Path) -> None:
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text('[auth]\nclient_id = "console"\n')
    assert main(["console", "--address", "0.0.0.0"]) == 0
    [cmd] = console_command
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"


def test_secrets_are_merged_as_streamlit_merges_them(tmp_path: Path) -> None:
    home, here = tmp_path / "home.toml", tmp_path / "here.toml"
    home.write_text('[auth]\nclient_id = "c"\n')
    here.write_text('[chorus]\ndefault_role = "viewer"\n')
    assert pipeline.secrets_name_an_identity_provider([home, here])
    assert not pipeline.secrets_name_an_identity_provider([here, tmp_path / "missing.toml"])
    here.write_text("[auth]\n")
    assert not pipeline.secrets_name_an_identity_provider([home, here]), "an empty [auth] is no provider"
    here.write_text("[auth\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        pipeline.secrets_name_an_identity_provider([here])
    (tmp_path / "k8s" / "auth").mkdir(parents=True)
    assert pipeline.secrets_name_an_identity_provider([tmp_path / "k8s"])


def test_the_app_started_by_hand_on_a_network_address_refuses_local_mode(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHORUS_STORE__URL", str(store.engine.url))
    monkeypatch.setenv("CHORUS_REVIEWER_ROLE", "lead")
    for address in ("0.0.0.0", "10.1.2.3"):
        with patch_config_options({"server.address": address}):
            at = AppTest.from_file(str(APP), default_timeout=60).run()
        assert not at.exception, at.exception
        [error] = [e.value for e in at.error]
        assert "without an identity provider" in error and address in error and "127.0.0.1" in error
        assert not at.dataframe and not at.button and not at.sidebar.text, "nothing of the store shows"

    with patch_config_options({"server.address": "127.0.0.1"}):
        at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and not at.error and at.title[0].value == "Flag queue"


def test_the_app_on_a_network_address_with_an_identity_provider_asks_for_a_sign_in(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHORUS_STORE__URL", str(store.engine.url))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "https://review.example/oauth2callback", "cookie_secret": "s",
                          "client_id": "c", "client_secret": "s",
                          "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}  # fmt: skip
    at.user = {"is_logged_in": False}
    with patch_config_options({"server.address": "0.0.0.0"}):
        at.run()
    assert not at.error and [b.label for b in at.button] == ["Sign in"]


# ---------------------------------------------------------------------------------------------
# The local reviewer comes from the configuration


def test_the_local_reviewer_is_configured_in_one_place() -> None:
    default = ChorusConfig.load(env={}).console
    assert default == ConsoleConfig() and default.reviewer_role == "reviewer", "local mode defaults to reviewer"
    assert auth.local_reviewer(default).role == "reviewer" and auth.local_reviewer(default).name.endswith(" (local)")
    aliased = ChorusConfig.load(env={"CHORUS_REVIEWER": "ann", "CHORUS_REVIEWER_ROLE": " Lead "}).console
    assert auth.local_reviewer(aliased) == Reviewer("ann", "lead")
    both = ChorusConfig.load(env={"CHORUS_REVIEWER_ROLE": "lead", "CHORUS_CONSOLE__REVIEWER_ROLE": "viewer"})
    assert both.console.reviewer_role == "viewer", "the sectioned name wins"
    assert ChorusConfig.load(env={"CHORUS_REVIEWER": "  "}).console.reviewer is None
    with pytest.raises(ConfigError, match="CHORUS_REVIEWER_ROLE"):
        ChorusConfig.load(env={"CHORUS_REVIEWER_ROLE": "admin"})
    assert REVIEWER_ROLES == ROLES, "the configuration's copy of the roles has not drifted"
    source = (Path(auth.__file__)).read_text(encoding="utf-8")
    assert "os.environ" not in source and "getenv" not in source, "the loader is the one reader of the environment"


def test_a_bad_role_is_explained_on_the_page(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_STORE__URL", str(store.engine.url))
    monkeypatch.setenv("CHORUS_REVIEWER_ROLE", "admin")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    [error] = [e.value.replace("\\", "") for e in at.error]  # Markdown-escaped
    assert "CHORUS_REVIEWER_ROLE" in error and "viewer, reviewer, lead" in error and not at.dataframe
