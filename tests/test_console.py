"""The review console driven like a user (streamlit.testing.v1.AppTest) on a store filled by the real pipeline.

The store comes from one `chorus demo` run per session (tests/conftest.py, console section); each
test works on its own copy. The tests also add the simulator's own campaigns (its ground truth,
``meta.sim.campaign``) with co-link evidence, in the format the coordination stage writes, so that
campaign pages have known members to check. What these prove: every page renders; claim, decide, bulk
decide, submit-and-next and reversal work from the UI and leave the right audit rows; two
reviewers claiming the same case -> the second is told; a viewer cannot decide; hostile posts are
shown as text; OIDC mode asks for a sign-in and maps e-mails to roles.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from console_fixtures import APP
from streamlit.testing.v1 import AppTest

from stream.review.claims import claim
from stream.review.decisions import decide
from stream.review.labels import labelled_decisions
from stream.store.database import Store
from stream.store.reviewers import PermissionDenied, Reviewer
from stream.store.tables import TABLES

ALICE, BOB, LEE = "alice@example.org", "bob@example.org", "lee@example.org"
HOSTILE = (
    '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 1">'
    "**bold** [click me](https://evil.example/phish) ![pixel](https://evil.example/t.png) <b>html</b>"
)


# ---------------------------------------------------------------------------------------------
# The store: the demo's output plus campaigns as the coordination stage will write them


def add_simulated_campaigns(store: Store) -> list[str]:
    """Campaigns from the simulator's ground truth, with co-link edges and their matched posts as evidence.

    Plus one campaign of the machine accounts whose posts were flagged, stored without link
    evidence (the console must then infer links itself and say so).
    """
    posts = store.frame("posts").with_columns(
        pl.col("meta").map_elements(lambda m: json.loads(m or "{}").get("sim", {}).get("campaign"),
                                    return_dtype=pl.String).alias("campaign"),
        pl.col("urls").map_elements(lambda u: json.loads(u or "[]"), return_dtype=pl.List(pl.String)).alias("url"),
    )  # fmt: skip
    campaigns, members = [], []
    for (name,), group in posts.filter(pl.col("campaign").is_not_null()).group_by("campaign", maintain_order=True):
        links = group.explode("url").drop_nulls("url")
        pairs = (
            links.join(links, on="url", suffix="_2")
            .filter(pl.col("account_id") < pl.col("account_id_2"))
            .filter((pl.col("created_at") - pl.col("created_at_2")).dt.total_seconds().abs() <= 60)
        )
        edges: dict[str, list[dict[str, Any]]] = {}
        for row in pairs.iter_rows(named=True):
            edges.setdefault(row["account_id"], []).append(
                {"account_id": row["account_id_2"], "network": "co_link", "weight": 1.0, "evidence": [
                    {"post_1": row["post_id"], "time_1": row["created_at"].isoformat(),
                     "post_2": row["post_id_2"], "time_2": row["created_at_2"].isoformat()}]}
            )  # fmt: skip
        accounts = sorted(set(group["account_id"]))
        first, last = group["created_at"].min(), group["created_at"].max()
        summary = {"density": 1.0, "synchrony": 0.95, "machine_share": None, "n_posts": group.height}
        campaigns.append({
            "campaign_id": f"sim-{name}", "first_seen": first, "last_seen": last, "size": len(accounts), "score": 0.9,
            "status": "open", "summary": summary,
        })  # fmt: skip
        members += [
            {"campaign_id": f"sim-{name}", "account_id": a, "weight": 1.0, "evidence": {"edges": edges.get(a, [])}}
            for a in accounts
        ]
    machine_accounts = set(posts.filter(pl.col("meta").str.contains('"machine":true', literal=True))["account_id"])
    bots = sorted(set(store.frame("flags")["account_id"]) & machine_accounts)[:4]  # ground truth, not the flags alone
    # What joins them: each pushed one link within a minute (stored as posts, the only evidence there is).
    pushed = posts["created_at"].max()
    pushes = [
        {"post_id": f"push-{i}", "account_id": bot, "created_at": pushed + timedelta(seconds=15 * i),
         "text": f"you need to see this https://offer.example/deal {i}", "lang": "en",
         "urls": ["https://offer.example/deal"]}
        for i, bot in enumerate(bots)
    ]  # fmt: skip
    store.write_batch(posts=pushes, results=[], flags=[], dead_letters=[])  # the worker's own write path
    campaigns.append({"campaign_id": "bot-network", "first_seen": posts["created_at"].min(),
                      "last_seen": posts["created_at"].max(), "size": len(bots), "score": 0.6, "status": "open",
                      "summary": {"density": 0.5}})  # fmt: skip
    members += [{"campaign_id": "bot-network", "account_id": a, "weight": 0.5, "evidence": {}} for a in bots]
    with store.transaction() as conn:
        conn.execute(sa.insert(TABLES["campaigns"]), campaigns)
        conn.execute(sa.insert(TABLES["campaign_members"]), members)
    return [c["campaign_id"] for c in campaigns]


@pytest.fixture
def console_store(demo_store: Path) -> Iterator[Store]:
    """A private copy of the demo store, with campaigns."""
    with Store.open(str(demo_store)) as store:
        add_simulated_campaigns(store)
        yield store


@pytest.fixture
def console(console_store: Store, console_opener: Callable[..., Callable[..., AppTest]]) -> Callable[..., AppTest]:
    """``console(reviewer, role)``: the app as that reviewer (local mode), on the test's store."""
    return console_opener(console_store, ALICE)


# ---------------------------------------------------------------------------------------------
# Helpers that act like a user


def button(at: AppTest, label: str) -> Any:
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def select_rows(at: AppTest, key_prefix: str, rows: list[int]) -> AppTest:
    """Tick rows in the table whose key starts with ``key_prefix`` (what a click on the checkboxes does)."""
    [table] = [d for d in at.dataframe if (d.key or "").startswith(key_prefix)]
    at.session_state[table.key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    return at.run()


def go(at: AppTest, page: str, **params: str) -> AppTest:
    at.query_params.clear()
    at.query_params.update(params)
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def notice(at: AppTest) -> str:
    """The banner an action left (shown on the rerun that follows the action, as in the browser)."""
    shown = [e.value for e in (*at.success, *at.warning, *at.error)]
    return " | ".join(shown)


def audit(store: Store) -> list[dict[str, Any]]:
    """The audit rows of what the test did: without the demo's own switch of the example policy."""
    rows = store.frame("audit_log").filter(pl.col("actor") != "chorus demo").to_dicts()
    for row in rows:
        row["before"], row["after"] = json.loads(row["before"] or "null"), json.loads(row["after"] or "null")
    return rows


def flag_of(store: Store, queue: pl.DataFrame, row: int) -> str:
    """The flag on a queue row: a post has at most one flag per detector (the demo runs two)."""
    post, detector = queue["post_id"][row], queue["detector"][row]
    [flag] = store.frame("flags").filter((pl.col("post_id") == post) & (pl.col("detector") == detector))["flag_id"]
    return flag


def flag_statuses(store: Store) -> dict[str, tuple[str, str | None]]:
    return {r["flag_id"]: (r["status"], r["assignee"]) for r in store.frame("flags").to_dicts()}


# ---------------------------------------------------------------------------------------------
# Pages


def test_every_page_renders_on_the_pipelines_store(console: Callable[..., AppTest], console_store: Store) -> None:
    at = console()
    flags = console_store.count("flags")
    assert flags > 0, "the demo flags machine-written posts"
    assert at.title[0].value == "Flag queue"
    assert at.caption[0].value.startswith(f"{flags} flags match")
    assert at.dataframe[0].value.shape[0] == flags
    assert "alice@example.org\nrole: reviewer" in texts(at)

    go(at, "campaigns")
    assert at.caption[0].value.startswith(f"{console_store.count('campaigns')} campaigns match")
    go(at, "post", flag=console_store.frame("flags", where="detector = 'llm_boilerplate'")["flag_id"][0])
    assert "Why it was flagged" in [h.value for h in at.subheader]
    leaked = ("I'm sorry", "AI language model", "Certainly! Here is")  # the simulator's leaked boilerplate
    assert any(phrase in t for t in texts(at) for phrase in leaked), texts(at)
    assert [m.label for m in at.metric][:2] == ["Score", "Calibrated probability"]
    assert any({"machine_share", "share_lower", "share_upper"} <= set(d.value.columns) for d in at.dataframe)
    assert any("account rules act on" in c.value for c in at.caption), "the account share is explained"
    go(at, "campaign", campaign="sim-campaign_0")
    assert "sim-campaign_0" in texts(at)
    assert at.get("vega_lite_chart"), "the account graph and the timeline are drawn"
    assert any(t.startswith("acct_c0_") for t in texts(at)), "co-link evidence: the matched posts side by side"
    go(at, "campaign", campaign="bot-network")
    captions = [c.value for c in at.caption]
    # stored without link evidence: the console computes the members' links with the coordination library
    assert any("links below are inferred" in c for c in captions), captions
    assert any(c.startswith("The graph draws all 6 links between members.") for c in captions), captions
    assert "No links between members." not in captions
    go(at, "history")
    assert at.title[0].value == "Decisions & audit"
    go(at, "overview")
    assert {m.label for m in at.metric} >= {"Open flags", "Past the SLA", "Posts/s (last batch)"}
    assert at.get("vega_lite_chart")
    go(at, "post")
    assert at.text_input[0].label == "Post id", "the post page without a post asks for one"


def test_the_sla_comes_from_the_configuration(
    console: Callable[..., AppTest], console_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[review] sla_hours`` (here ``CHORUS_REVIEW__SLA_HOURS``, read by ``ChorusConfig.load``) is the SLA
    the queue shows and the overview counts overdue flags against."""
    flags = TABLES["flags"]
    aged = console_store.frame("flags")["flag_id"].to_list()[:3]
    with console_store.transaction() as conn:
        conn.execute(
            sa.update(flags).where(flags.c.flag_id.in_(aged)).values(flagged_at=datetime.now(UTC) - timedelta(hours=2))
        )

    def past_the_sla(at: AppTest) -> str:
        return next(m.value for m in go(at, "overview").metric if m.label == "Past the SLA")

    default = console()
    assert default.caption[0].value.endswith("SLA 1d 0h")
    assert past_the_sla(default) == "0"
    monkeypatch.setenv("CHORUS_REVIEW__SLA_HOURS", "1.5")
    configured = console()
    assert configured.caption[0].value.endswith("SLA 1h 30m")
    assert past_the_sla(configured) == str(len(aged))


def test_queue_filters_and_sorts(console: Callable[..., AppTest], console_store: Store) -> None:
    at = console()
    account = console_store.frame("flags")["account_id"][0]
    at.text_input(key="q-account").input(account).run()
    assert set(at.dataframe[0].value["account_id"]) == {account}
    at.selectbox(key="q-sort").select("oldest").run()
    at.selectbox(key="q-who").select("me").run()
    assert at.caption[0].value.startswith("0 flags match")


# ---------------------------------------------------------------------------------------------
# Actions


def test_claim_then_bulk_decision_from_the_queue_is_audited(
    console: Callable[..., AppTest], console_store: Store
) -> None:
    at = console()
    queue = at.dataframe[0].value
    chosen = [flag_of(console_store, queue, row) for row in range(3)]
    select_rows(at, "q-table", [0, 1, 2])
    assert at.subheader[0].value == "3 selected"
    button(at, "Claim").click().run()
    assert notice(at) == "3 done"
    assert {flag_statuses(console_store)[f] for f in chosen} == {("claimed", ALICE)}

    select_rows(at, "q-table", [0, 1, 2])
    at.selectbox(key="q-bulk-decision-0").select("dismiss").run()
    at.selectbox(key="q-bulk-reason-dismiss-0").select("false_positive").run()
    at.text_area(key="q-bulk-statement-0").input("Quoted a chatbot on purpose: satire.").run()
    button(at, "Decide selected").click().run()
    assert notice(at) == "3 done"
    assert {flag_statuses(console_store)[f] for f in chosen} == {("dismissed", ALICE)}
    decisions = console_store.frame("review_decisions")
    assert sorted(decisions["subject_id"]) == sorted(chosen)
    assert set(decisions["reason_code"]) == {"false_positive"}
    assert set(decisions["statement"]) == {"Quoted a chatbot on purpose: satire."}
    trail = [a for a in audit(console_store) if a["action"] == "flag.decide"]
    assert sorted(a["subject_id"] for a in trail) == sorted(chosen)
    for row in trail:
        assert row["actor"] == ALICE and row["at"] is not None
        assert row["before"] == {"status": "claimed", "assignee": ALICE}
        assert row["after"]["status"] == "dismissed" and row["after"]["reason_code"] == "false_positive"
    assert at.caption[0].value.startswith(f"{console_store.count('flags') - 3} flags match"), "decided cases leave"


def test_second_reviewer_claiming_the_same_case_is_told(console: Callable[..., AppTest], console_store: Store) -> None:
    alice, bob = console(ALICE), console(BOB)
    first = flag_of(console_store, alice.dataframe[0].value, 0)
    select_rows(alice, "q-table", [0])
    select_rows(bob, "q-table", [0])  # bob's screen still shows the case as open
    button(alice, "Claim").click().run()
    button(bob, "Claim").click().run()
    assert notice(alice) == "1 done"
    assert notice(bob) == "0 done, 1 not changed"
    told = [d.value for d in bob.dataframe if list(d.value.columns) == ["case", "why not"]]
    assert told and told[0].to_dict("records") == [{"case": first, "why not": f"already claimed by {ALICE}"}]
    assert flag_statuses(console_store)[first] == ("claimed", ALICE)
    assert [a["actor"] for a in audit(console_store)] == [ALICE]


def test_start_reviewing_then_submit_and_next(console: Callable[..., AppTest], console_store: Store) -> None:
    at = console()
    at.selectbox(key="q-sort").select("oldest").run()
    button(at, "Start reviewing").click().run()
    first = at.query_params["flag"]
    assert at.title[0].value == "Post" and flag_statuses(console_store)[first] == ("claimed", ALICE)
    button(at, "Action: label").click().run()  # the "4" shortcut's button
    assert at.selectbox(key="post-decision-0").value == "label"
    at.selectbox(key="post-reason-label-0").select("undisclosed_ai_text").run()
    button(at, "Submit and next").click().run()
    assert "statement of reasons" in notice(at), "a label restricts content: it needs a statement"
    assert flag_statuses(console_store)[first] == ("claimed", ALICE)

    at.text_area(key="post-statement-0").input("Leaked assistant boilerplate; labelled as machine-written.").run()
    button(at, "Submit and next").click().run()
    second = at.query_params["flag"]
    assert second != first
    statuses = flag_statuses(console_store)
    assert statuses[first] == ("actioned", ALICE) and statuses[second] == ("claimed", ALICE)
    assert at.text_area(key="post-statement-1").value == "", "the next case starts with an empty form"
    [decision] = console_store.frame("review_decisions").to_dicts()
    assert (decision["subject_id"], decision["decision"], decision["reviewer"]) == (first, "label", ALICE)
    assert [a["action"] for a in audit(console_store)] == ["flag.claim", "flag.decide", "flag.claim"]


def test_reversal_from_the_history_page(console: Callable[..., AppTest], console_store: Store) -> None:
    flags = console_store.frame("flags")["flag_id"].to_list()
    outcome = decide(console_store, Reviewer(ALICE), flags[:2], "remove", "spam", "Spam run.")
    assert outcome.ok
    bob = go(console(BOB), "history")
    bob.radio(key="h-whose").set_value("everyone's").run()
    select_rows(bob, "h-table", [0])
    bob.text_area(key="h-statement-0").input("Appeal: it is a quote.").run()
    button(bob, "Reverse selected").click().run()
    assert "only a lead reverses decisions of others" in notice(bob)
    assert console_store.count("review_decisions") == 2

    lee = go(console(LEE, "lead"), "history")
    select_rows(lee, "h-table", [0, 1])
    lee.selectbox(key="h-reason").select("appeal_upheld").run()
    lee.text_area(key="h-statement-0").input("Appeal upheld: the author quoted a chatbot.").run()
    button(lee, "Reverse selected").click().run()
    assert notice(lee) == "2 done"
    assert {flag_statuses(console_store)[f] for f in flags[:2]} == {("open", None)}
    reversals = [a for a in audit(console_store) if a["action"] == "flag.reverse"]
    assert sorted(a["subject_id"] for a in reversals) == sorted(flags[:2])
    assert {a["actor"] for a in reversals} == {LEE}
    assert {a["before"]["status"] for a in reversals} == {"actioned"}
    assert labelled_decisions(console_store).is_empty(), "reversed decisions leave the training export"


def test_campaign_decision_from_the_campaign_page(console: Callable[..., AppTest], console_store: Store) -> None:
    at = go(console(), "campaign", campaign="bot-network")
    bots = set(console_store.frame("campaign_members").filter(pl.col("campaign_id") == "bot-network")["account_id"])
    member_flags = console_store.frame("flags").filter(pl.col("account_id").is_in(bots))["flag_id"].to_list()
    assert member_flags
    assert at.metric[2].label == "Undecided member flags" and at.metric[2].value == str(len(member_flags))
    button(at, "Claim").click().run()
    assert notice(at) == "1 done"
    at.selectbox(key="campaign-decision-0").select("suspend_account").run()
    at.selectbox(key="campaign-reason-suspend_account-0").select("coordinated_inauthentic").run()
    at.text_area(key="campaign-statement-0").input("Four accounts posting the same assistant boilerplate.").run()
    assert at.checkbox(key="campaign-include").value is False  # members' flags only when asked, and counted
    at.checkbox(key="campaign-include").check().run()
    assert any(f"and {len(member_flags)} member flags." in c.value for c in at.caption)
    button(at, "Decide campaign").click().run()
    assert notice(at) == f"{1 + len(member_flags)} done"
    assert console_store.frame("campaigns").filter(pl.col("campaign_id") == "bot-network")["status"][0] == "actioned"
    assert {flag_statuses(console_store)[f] for f in member_flags} == {("actioned", ALICE)}
    decided = [a for a in audit(console_store) if a["action"] == "campaign.decide"]
    assert len(decided) == 1 and sorted(decided[0]["after"]["flag_decisions"]) == sorted(member_flags)


def test_download_of_labelled_decisions(console: Callable[..., AppTest], console_store: Store) -> None:
    flags = console_store.frame("flags")["flag_id"].to_list()
    decide(console_store, Reviewer(ALICE), flags[:1], "confirm", "undisclosed_ai_text")
    at = go(console(), "history")
    [download] = at.get("download_button")
    assert download.label == "Download labelled decisions (CSV)"
    export = labelled_decisions(console_store, include_text=True)
    assert export["flag_id"].to_list() == flags[:1] and export["label"].to_list() == [1]


# ---------------------------------------------------------------------------------------------
# Roles and identity


def test_a_viewer_cannot_decide(console: Callable[..., AppTest], console_store: Store) -> None:
    at = console("val@example.org", "viewer")
    assert "val@example.org\nrole: viewer" in texts(at)
    assert button(at, "Start reviewing").disabled
    select_rows(at, "q-table", [0])
    assert button(at, "Claim").disabled and button(at, "Decide selected").disabled
    assert button(at, "Open").disabled is False, "viewers may read every case"
    go(at, "post", flag=console_store.frame("flags", where="detector = 'llm_boilerplate'")["flag_id"][0])
    assert button(at, "Submit").disabled and button(at, "Submit and next").disabled and button(at, "Claim").disabled
    assert any("Viewers cannot decide" in c.value for c in at.caption)
    with pytest.raises(PermissionDenied):  # and the data layer refuses even if the UI did not
        decide(console_store, Reviewer("val@example.org", "viewer"), ["x"], "confirm", "spam")
    assert audit(console_store) == []


def test_oidc_mode_signs_in_and_maps_roles(console_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_STORE__URL", str(console_store.engine.url))
    monkeypatch.setenv("CHORUS_REVIEWER", "ignored-in-oidc-mode")
    auth = {
        "redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s", "client_id": "c",
        "client_secret": "s", "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }  # fmt: skip
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["auth"] = auth
    at.secrets["chorus"] = {"roles": {LEE: "lead"}}
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button] == ["Sign in"] and not at.dataframe, "nothing shows before signing in"

    at.user = {"is_logged_in": True, "email": LEE, "name": "Lee"}
    at.run()
    assert f"{LEE}\nrole: lead" in texts(at)
    at.user = {"is_logged_in": True, "email": "stranger@example.org"}
    at.run()
    assert "stranger@example.org\nrole: viewer" in texts(at), "anyone not listed may only look"


# ---------------------------------------------------------------------------------------------
# Hostile and huge input, evidence highlighting


def write_flagged_post(store: Store, post_id: str, text: str, account: str, evidence: dict[str, Any]) -> str:
    """A post, its detector result and its flag, through the worker's own write path."""
    now = datetime.now(UTC)
    store.write_batch(
        posts=[{"post_id": post_id, "account_id": account, "created_at": now - timedelta(minutes=5), "text": text,
                "lang": "en", "urls": ["javascript:alert(1)"], "hashtags": ["<b>tag</b>"]}],
        results=[{"post_id": post_id, "detector": "aitext", "model_version": "test", "score": 0.97,
                  "probability": 0.93, "threshold_name": "low_fpr", "threshold": 0.9, "flagged": True,
                  "evidence": evidence}],
        flags=[{"flag_id": f"aitext:{post_id}", "post_id": post_id, "account_id": account, "detector": "aitext",
                "model_version": "test", "score": 0.97, "probability": 0.93, "threshold_name": "low_fpr",
                "threshold": 0.9, "evidence": evidence, "post_created_at": now - timedelta(minutes=5)}],
        dead_letters=[],
    )  # fmt: skip
    return f"aitext:{post_id}"


def test_hostile_post_is_shown_as_text_never_markup(console: Callable[..., AppTest], console_store: Store) -> None:
    account = "<b>acct</b>[x](https://evil.example)"
    tokens = ["<script>", "alert(1)", "</script>", " As an AI", " language model"]
    evidence = {"tokens": tokens, "surprisal": [9.0, 7.5, 8.0, 0.4, 0.2], "phrases": ["<b>html</b>"]}
    flag = write_flagged_post(console_store, "evil-1", HOSTILE, account, evidence)
    at = go(console(), "post", flag=flag)
    assert HOSTILE in texts(at), "the text is shown exactly, as text"
    assert account in texts(at)
    markdown = [m.value for m in (*at.markdown, *at.caption, *at.title, *at.subheader, *at.success, *at.warning,
                                  *at.error)]  # fmt: skip
    for value in markdown:
        assert "evil.example" not in value and "<script" not in value and "onerror" not in value, value
    html = [h.value for h in at.get("html")]
    shading = [h for h in html if 'title="surprisal 0.20 bits"' in h]
    marked = [h for h in html if "<mark" in h]
    assert len(shading) == 1 and len(marked) == 1, "surprisal shading and the matched phrase (beside the score bar)"
    # The console's own page scripts are constants (no store data reaches them); everything else is inert.
    from dashboards import render

    own = {render.QUICK_SEARCH_HOTKEY, *(render.scroll_to_top_html(v) for v in range(50))}
    for body in html:
        if body not in own:
            assert "<script" not in body and "<img" not in body and "<b>" not in body, body
    assert "&lt;script&gt;" in shading[0]
    assert "&lt;b&gt;html&lt;/b&gt;" in marked[0]
    assert [m.value for m in at.metric][:2] == ["0.970", "93.0%"], "score and calibrated probability"

    queue = console()
    assert HOSTILE[:200] in list(queue.dataframe[0].value["preview"]), "queue previews are table cells (text)"


def test_huge_post_is_cut_with_a_download(console: Callable[..., AppTest], console_store: Store) -> None:
    flag = write_flagged_post(console_store, "huge-1", "A" * 200_000 + "<script>", "acct-huge", {})
    at = go(console(), "post", flag=flag)
    assert "A" * 20_000 in texts(at) and not any(len(t) > 20_000 for t in texts(at))
    assert any("first 20,000 of 200,008 characters" in c.value for c in at.caption)
    assert [d.label for d in at.get("download_button")] == ["Download the full text"]
    assert any("No per-token evidence" in c.value for c in at.caption), "no evidence: said, not an error"


# ---------------------------------------------------------------------------------------------
# Automated actions (the demo runs the example policy)


def test_automated_actions_are_shown_explained_and_reversed(
    console: Callable[..., AppTest], console_store: Store
) -> None:
    actions = console_store.frame("policy_actions").sort("decided_at", "action_id", descending=[True, False])
    active = actions.filter(pl.col("mode") == "active")
    assert active.height > 0, "the demo switches the example policy on, so its actions reach the store"
    at = go(console(), "actions")
    assert at.title[0].value == "Automated actions"
    assert any(c.value.startswith(f"{active.height:,} actions match") for c in at.caption)
    assert "No circuit breaker is open and no alert is waiting." in [s.value for s in at.success]

    select_rows(at, "ac-table", [0])
    first = action_detail_row(console_store, at)
    assert f"by rule {first['rule_id']}" in " ".join(h.value for h in at.subheader).replace("\\", "")
    assert first["post_id"] in " ".join(texts(at))

    button(at, "Reverse selected").click().run()
    assert "say why" in notice(at), "a reason is required"
    at.text_area(key="ac-reason-0").input("Quoted a chatbot to mock it; not machine-written.").run()
    button(at, "Reverse selected").click().run()
    assert notice(at).startswith("1 done")
    [row] = console_store.frame("policy_actions").filter(pl.col("action_id") == first["action_id"]).to_dicts()
    assert row["reversed_by"] == ALICE and row["reversal_emitted_at"] is None, "a worker relays it to the topic"
    [entry] = [a for a in audit(console_store) if a["action"] == "policy_action.reverse"]
    assert entry["subject_id"] == first["action_id"] and entry["actor"] == ALICE

    viewer = go(console("vic@example.org", "viewer"), "actions")
    select_rows(viewer, "ac-table", [1])
    assert button(viewer, "Reverse selected").disabled


def action_detail_row(store: Store, at: AppTest) -> dict[str, Any]:
    """The action shown in the detail panel: the newest one (the table's first row)."""
    rows = store.frame("policy_actions").filter(pl.col("mode") == "active")
    return rows.sort("decided_at", "action_id", descending=[True, False]).row(0, named=True)


def test_an_open_circuit_breaker_is_raised_and_acknowledged(
    console: Callable[..., AppTest], console_store: Store
) -> None:
    alert = {
        "at": datetime.now(UTC),
        "kind": "breaker_tripped",
        "policy_id": "chorus-example",
        "policy_version": "1",
        "rule_id": "boilerplate-label",
        "share": 0.42,
        "matched": 840,
        "posts": 2000,
        "settings": {"max_share": 0.2},
        "worker_id": "demo-worker-0",
    }
    console_store.write_batch(posts=[], results=[], flags=[], dead_letters=[], alerts=[alert])
    at = go(console(), "actions")
    errors = [e.value for e in at.error]
    assert any("circuit breaker(s) open" in e for e in errors), "the sidebar warns on every page"
    assert any("Circuit breaker open" in e and "42.0%" in e for e in errors)
    select_rows(at, "al-table", [0])
    button(at, "Acknowledge selected").click().run()
    assert notice(at).startswith("1 done")
    [row] = console_store.frame("policy_alerts").to_dicts()
    assert row["acknowledged_by"] == ALICE
    assert any("Circuit breaker open" in e.value for e in at.error), "acknowledged, but still open until it recovers"


def test_a_campaign_without_stored_links_whose_posts_show_none_says_so(
    console: Callable[..., AppTest], console_store: Store
) -> None:
    """Nothing stored and nothing the coordination library can find: the page says both, and does not
    read the stage's density as links it failed to store ("the strongest 0 of 3 links")."""
    with console_store.transaction() as conn:
        conn.execute(sa.insert(TABLES["campaigns"]), [{
            "campaign_id": "quiet-network", "first_seen": datetime.now(UTC) - timedelta(hours=1),
            "last_seen": datetime.now(UTC), "size": 3, "score": 0.5, "status": "open", "summary": {"density": 0.5},
        }])  # fmt: skip
        conn.execute(
            sa.insert(TABLES["campaign_members"]),
            [{"campaign_id": "quiet-network", "account_id": a, "weight": 0.5, "evidence": {}} for a in "xyz"],
        )
    captions = [c.value for c in go(console(), "campaign", campaign="quiet-network").caption]
    assert any("finds no co-action among the members' posts" in c for c in captions), captions
    assert any(c.startswith("There are no links between members to draw.") for c in captions), captions
    assert any("the coordination stage measured 0.50" in c for c in captions), captions
    assert not any("strongest" in c for c in captions), captions


def test_a_post_flagged_by_two_detectors_offers_both_cases_with_their_state(
    console: Callable[..., AppTest], console_store: Store
) -> None:
    """The case picker carries each case's state (no line of its own: the panel stays short enough for
    its Submit button to sit on a laptop's first screen; tests/test_console_browser.py measures it)."""
    flags = console_store.frame("flags")
    twice = flags.group_by("post_id").len().filter(pl.col("len") == 2)["post_id"]
    assert len(twice), "the demo runs two detectors, and some posts are flagged by both"
    cases = sorted(flags.filter(pl.col("post_id") == twice[0])["flag_id"])
    assert claim(console_store, Reviewer(ALICE), cases[1:]).ok
    at = go(console(), "post", flag=cases[0])
    picker = at.selectbox(key="post-flag")
    assert picker.options == [f"{cases[0]} (open)", f"{cases[1]} (claimed, held by {ALICE})"]
    assert not [t for t in texts(at) if t.startswith("Case ")], "the state is said once, in the picker"
