"""Statement templates, team notes and saved filters in the console, driven like a user (AppTest).

What these prove, on a small SQLite store written through the worker's own write path: a reviewer
picks a template in the post view's decision panel and the post's ids are filled in; what is left to
fill in, and the statement as it will be sent, are in a small popover beside the submit button (not in
a row above it); a submit while ``[[...]]`` is left is refused beside the button, nothing is written and
the form keeps what was typed; once filled, the decision goes through with the statement as filled
(``{reason}`` from the chosen reason code); the campaign view fills ``{campaign}``. A lead writes, edits and disables a
template on the statement templates page; a reviewer and a viewer read them there but cannot. A
note added on the post view shows with its author, writes an audit row, shows on the account and
campaign pages (notes added there too) and never reaches the labelled-decisions export; a viewer
reads notes but cannot add one. A saved filter, applied after the filters were changed, puts every
filter back and the queue with them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest
from test_console import button, go, texts, write_flagged_post

from stream.review import templates
from stream.review.labels import labelled_decisions
from stream.store.database import Store
from stream.store.reviewers import Reviewer
from stream.store.tables import TABLES

ALICE, LEE, VAL = "alice@example.org", "lee@example.org", "val@example.org"
ACCOUNT, OTHER = "acct-team", "acct-other"
POST_BODY = "Your post {post_id} from {account} was labelled because {reason}: [[explain what was misleading]]."
FILLED_IN = "it is a chatbot's answer posted as the author's own words"
SECRET = "Internal: same operator as acct-other, per the platform's abuse desk"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """Two flagged posts of ACCOUNT, one of OTHER, a campaign of both, and two templates by a lead."""
    with Store.open(f"sqlite:///{tmp_path / 'team.db'}") as opened:
        write_flagged_post(opened, "team-post-1", "Certainly! Here is a post about the election.", ACCOUNT, {})
        write_flagged_post(opened, "team-post-2", "As an AI language model I love this.", ACCOUNT, {})
        write_flagged_post(opened, "other-post-1", "my cat knocked the coffee over", OTHER, {})
        now = datetime.now(UTC)
        with opened.transaction() as conn:
            conn.execute(
                sa.insert(TABLES["campaigns"]).values(
                    campaign_id="camp-team", first_seen=now - timedelta(hours=1), last_seen=now, size=2, score=0.9,
                    summary={"density": 1.0},
                )
            )  # fmt: skip
            conn.execute(
                sa.insert(TABLES["campaign_members"]),
                [
                    {"campaign_id": "camp-team", "account_id": a, "weight": 1.0, "evidence": {}}
                    for a in (ACCOUNT, OTHER)
                ],
            )
        lead = Reviewer(LEE, "lead")
        templates.save_template(
            opened,
            lead,
            name="Misleading AI text",
            body=POST_BODY,
            subjects=["post"],
            reason_code="undisclosed_ai_text",
        )
        templates.save_template(
            opened, lead, name="Coordinated campaign", subjects=["campaign"],
            body="Campaign {campaign} was found coordinated: [[what the accounts did together]].",
        )  # fmt: skip
        yield opened


@pytest.fixture
def console(store: Store, console_opener: Callable[..., Callable[..., AppTest]]) -> Callable[..., AppTest]:
    """``console(reviewer, role)``: the app in local mode on the test's store."""
    return console_opener(store, ALICE)


def template_id(store: Store, name: str) -> int:
    [found] = [t.template_id for t in templates.list_templates(store, include_disabled=True) if t.name == name]
    return found


def audit(store: Store) -> list[dict[str, Any]]:
    rows = store.frame("audit_log").sort("audit_id").to_dicts()
    for row in rows:
        row["after"] = json.loads(row["after"] or "null")
    return rows


def plain(markdown: str) -> str:
    """What a Markdown element shows: the text without the backslashes that escape it."""
    return markdown.replace("\\", "")


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def choose(at: AppTest, form: str, decision: str, reason_code: str) -> None:
    """Pick a decision, then a reason code, in the decision panel ``form`` (each pick reruns the page)."""
    at.selectbox(key=f"{form}-decision-0").set_value(decision)
    run(at)
    at.selectbox(key=f"{form}-reason-{decision}-0").set_value(reason_code)
    run(at)


def beside_submit(at: AppTest, submit_label: str = "Submit") -> dict[str, Any]:
    """The popovers in the submit button's own row, by label (the row is the block holding the button)."""

    def rows(node: Any) -> Iterator[Any]:
        children = list(getattr(node, "children", {}).values())
        if any(getattr(c, "type", None) == "button" and c.label == submit_label for c in children):
            yield node
        for child in children:
            yield from rows(child)

    [row] = list(rows(at._tree))
    return {c.proto.popover.label: c for c in row.children.values() if getattr(c, "type", None) == "popover"}


# ---------------------------------------------------------------------------------------------
# Statement templates in the decision panel


def test_a_template_with_a_placeholder_left_is_refused_then_goes_through_filled(
    console: Callable[..., AppTest], store: Store
) -> None:
    at = go(console(), "post", flag="aitext:team-post-1")
    choose(at, "post", "label", "undisclosed_ai_text")
    picker = at.selectbox(key="post-template-0")
    assert picker.options == ["Misleading AI text (undisclosed_ai_text)"], (
        "the campaign template is not offered on a post"
    )
    picker.set_value(template_id(store, "Misleading AI text"))
    run(at)
    statement = at.text_area(key="post-statement-0").value
    assert statement == (
        "Your post team-post-1 from acct-team was labelled because {reason}: [[explain what was misleading]]."
    ), "the post's ids are filled in when the template is picked; the reason when the decision is sent"
    assert any("[[explain what was misleading]]" in plain(c.value) for c in at.caption), "what is left is named"
    # ... in a small popover beside the submit button, not in a row above it that pushes the button down
    [left] = beside_submit(at).values()
    assert left.proto.popover.label == "1 to fill in"
    assert [plain(c.value) for c in left.caption] == [
        "To fill in before submitting: [[explain what was misleading]]",
        "The statement the user will be told, placeholders filled:",
    ]
    assert [t.value for t in left.text] == [
        statement.replace("{reason}", "Machine-written text presented as a person's own")
    ], "the reason code fills {reason}"

    button(at, "Submit").click()
    run(at)
    refused = plain(" | ".join(e.value for e in at.error))
    assert "Nothing was decided" in refused and "[[explain what was misleading]]" in refused
    assert store.count("review_decisions") == 0
    assert store.frame("flags", where="flag_id = 'aitext:team-post-1'")["status"].to_list() == ["open"]
    assert at.text_area(key="post-statement-0").value == statement, "the form is kept as it was"
    assert at.selectbox(key="post-decision-0").value == "label"
    assert at.selectbox(key="post-reason-label-0").value == "undisclosed_ai_text"

    at.text_area(key="post-statement-0").input(statement.replace("[[explain what was misleading]]", FILLED_IN))
    run(at)
    [preview] = beside_submit(at).values()
    assert preview.proto.popover.label == "Preview", "nothing left to fill in: the statement as it will be sent"
    assert [t.value for t in preview.text] == [
        "Your post team-post-1 from acct-team was labelled because Machine-written text presented as a "
        f"person's own: {FILLED_IN}."
    ]
    button(at, "Submit").click()
    run(at)
    [decision] = store.frame("review_decisions").to_dicts()
    assert (decision["subject_id"], decision["decision"], decision["reason_code"]) == (
        "aitext:team-post-1", "label", "undisclosed_ai_text",
    )  # fmt: skip
    assert decision["statement"] == (
        "Your post team-post-1 from acct-team was labelled because Machine-written text presented as a "
        f"person's own: {FILLED_IN}."
    )


def test_the_campaign_view_fills_the_campaign(console: Callable[..., AppTest], store: Store) -> None:
    at = go(console(), "campaign", campaign="camp-team")
    picker = at.selectbox(key="campaign-template-0")
    assert picker.options == ["Coordinated campaign"]
    picker.set_value(template_id(store, "Coordinated campaign"))
    run(at)
    assert at.text_area(key="campaign-statement-0").value == (
        "Campaign camp-team was found coordinated: [[what the accounts did together]]."
    )
    choose(at, "campaign", "label", "coordinated_inauthentic")
    assert list(beside_submit(at, "Decide campaign")) == ["1 to fill in"]
    button(at, "Decide campaign").click()
    run(at)
    assert any("[[what the accounts did together]]" in plain(e.value) for e in at.error)
    assert store.count("review_decisions") == 0


def test_a_lead_writes_edits_and_disables_a_template_on_its_page(console: Callable[..., AppTest], store: Store) -> None:
    at = console(LEE, "lead")
    assert not [b for b in at.button if b.label == "Save template"], "the editor is not on the queue page"
    go(at, "templates")
    assert at.title[0].value == "Statement templates"
    assert {"Misleading AI text", "Coordinated campaign"} <= set(at.dataframe[0].value["name"])
    at.text_input(key="tpl-name-0").input("Spam")
    at.multiselect(key="tpl-subjects-0").set_value(["post"])
    at.text_area(key="tpl-body-0").input("Post {post_id} is spam: [[which links]].")
    run(at)
    button(at, "Save template").click()
    run(at)
    saved = {t.name: t for t in templates.list_templates(store, include_disabled=True)}
    assert saved["Spam"].body == "Post {post_id} is spam: [[which links]]." and saved["Spam"].subjects == ("post",)
    assert audit(store)[-1]["action"] == "template.create" and audit(store)[-1]["actor"] == LEE

    at.selectbox(key="tpl-pick-1").set_value(saved["Spam"].template_id)
    run(at)
    assert at.text_input(key="tpl-name-1").value == "Spam", "the chosen template fills the editor"
    at.text_area(key="tpl-body-1").input("Post {post_id} is spam.")
    run(at)
    button(at, "Save template").click()
    run(at)
    assert templates.list_templates(store, kinds=("post",))[-1].body == "Post {post_id} is spam."

    at.selectbox(key="tpl-pick-2").set_value(saved["Spam"].template_id)
    run(at)
    button(at, "Disable").click()
    run(at)
    assert "Spam" not in [t.name for t in templates.list_templates(store)]
    assert [r["action"] for r in audit(store)][-2:] == ["template.edit", "template.disable"]

    at.text_input(key="tpl-name-3").input("Typo")
    at.text_area(key="tpl-body-3").input("Dear {acount}")
    run(at)
    button(at, "Save template").click()
    run(at)
    assert any("which no case fills" in e.value for e in at.error), "the refusal is shown beside the button"


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_only_a_lead_can_write_templates(console: Callable[..., AppTest], role: str) -> None:
    at = go(console(VAL, role), "templates")
    assert set(at.dataframe[0].value["name"]) == {"Misleading AI text", "Coordinated campaign"}, "everyone reads them"
    assert not [b for b in at.button if b.label == "Save template"] and not at.main.text_input, "no editor"
    assert any("Only leads create, edit or disable templates" in c.value for c in at.caption)


# ---------------------------------------------------------------------------------------------
# Team notes


def test_a_note_shows_with_its_author_is_audited_and_stays_out_of_the_export(
    console: Callable[..., AppTest], store: Store
) -> None:
    at = go(console(), "post", flag="aitext:team-post-1")
    at.text_area(key="post-note-0").input(SECRET)
    run(at)
    button(at, "Add note").click()
    run(at)
    assert SECRET in texts(at)
    assert any(
        plain(c.value).startswith(f"{ALICE} · ") and "on flag aitext:team-post-1" in plain(c.value) for c in at.caption
    )
    assert at.text_area(key="post-note-1").value == "", "an empty box for the next note"
    [note] = store.frame("case_notes").to_dicts()
    assert (note["subject_type"], note["subject_id"], note["author"], note["body"]) == (
        "flag", "aitext:team-post-1", ALICE, SECRET,
    )  # fmt: skip
    last = audit(store)[-1]
    assert (last["action"], last["subject_id"], last["actor"]) == ("flag.note", "aitext:team-post-1", ALICE)
    assert last["after"]["note_id"] == note["note_id"]

    go(at, "account", account=ACCOUNT)
    assert SECRET in texts(at), "the account page lists the notes on its flags"
    at.text_area(key="acct-note-0").input("Account-level: watch for new sign-ups.")
    run(at)
    button(at, "Add note").click()
    run(at)
    assert "Account-level: watch for new sign-ups." in texts(at)

    go(at, "campaign", campaign="camp-team")
    at.text_area(key="campaign-note-0").input("Campaign-level: the hashtags line up to the second.")
    run(at)
    button(at, "Add note").click()
    run(at)
    assert "Campaign-level: the hashtags line up to the second." in texts(at)
    assert [r["action"] for r in audit(store)][-3:] == ["flag.note", "account.note", "campaign.note"]

    go(at, "post", flag="aitext:team-post-1")  # the decision's statement does not carry the note either
    choose(at, "post", "confirm", "undisclosed_ai_text")
    button(at, "Submit").click()
    run(at)
    [statement] = store.frame("review_decisions")["statement"].to_list()
    assert SECRET not in (statement or "")
    export = labelled_decisions(store, include_text=True)
    assert export["flag_id"].to_list() == ["aitext:team-post-1"]
    assert SECRET not in export.write_csv() and "sign-ups" not in export.write_csv()


def test_a_viewer_reads_notes_but_cannot_add_one(console: Callable[..., AppTest], store: Store) -> None:
    at = go(console(), "post", flag="aitext:team-post-2")
    at.text_area(key="post-note-0").input(SECRET)
    run(at)
    button(at, "Add note").click()
    run(at)
    viewer = go(console(VAL, "viewer"), "post", flag="aitext:team-post-2")
    assert SECRET in texts(viewer), "viewers read the notes"
    assert button(viewer, "Add note").disabled and viewer.text_area(key="post-note-0").disabled
    assert any("Viewers read the notes but cannot add one" in c.value for c in viewer.caption)
    go(viewer, "campaign", campaign="camp-team")
    assert button(viewer, "Add note").disabled
    assert store.count("case_notes") == 1


# ---------------------------------------------------------------------------------------------
# Saved filters


def test_a_saved_filter_reapplies_its_filters(console: Callable[..., AppTest], store: Store) -> None:
    at = console()
    assert "3 flags match" in " ".join(c.value for c in at.caption)
    at.text_input(key="q-account").input(ACCOUNT)
    at.selectbox(key="q-sort").set_value("newest")
    at.selectbox(key="q-age").set_value("last_day")
    at.multiselect(key="q-status").set_value(["open"])
    run(at)
    assert "2 flags match" in " ".join(c.value for c in at.caption)
    at.text_input(key="q-save-name").input("my account")
    run(at)
    button(at, "Save").click()
    run(at)
    [saved] = store.frame("saved_filters").to_dicts()
    assert (saved["name"], saved["owner"], saved["shared"]) == ("my account", ALICE, False)

    at.text_input(key="q-account").input("")
    at.selectbox(key="q-sort").set_value("score")
    at.selectbox(key="q-age").set_value("any")
    run(at)
    assert "3 flags match" in " ".join(c.value for c in at.caption)
    at.selectbox(key="q-saved").set_value(saved["filter_id"])
    run(at)
    button(at, "Apply").click()
    run(at)
    assert at.text_input(key="q-account").value == ACCOUNT
    assert (at.selectbox(key="q-sort").value, at.selectbox(key="q-age").value) == ("newest", "last_day")
    assert at.multiselect(key="q-status").value == ["open"]
    assert "2 flags match" in " ".join(c.value for c in at.caption)
    [table] = [d for d in at.dataframe if (d.key or "").startswith("q-table")]
    assert list(table.value["post_id"]) == ["team-post-2", "team-post-1"], "newest first, only the account's"

    other = console(VAL, "reviewer")
    assert not other.selectbox(key="q-saved").options, "a saved filter is its owner's"
    assert other.checkbox(key="q-save-shared").disabled, "only a lead shares a filter"

    lead = console(LEE, "lead")
    lead.text_input(key="q-save-name").input("team: overdue")
    lead.selectbox(key="q-age").set_value("overdue")
    lead.checkbox(key="q-save-shared").check()
    run(lead)
    button(lead, "Save").click()
    run(lead)
    assert console(VAL, "reviewer").selectbox(key="q-saved").options == [f"team: overdue (team, by {LEE})"]

    at.selectbox(key="q-saved").set_value(saved["filter_id"])
    run(at)
    button(at, "Delete").click()
    run(at)
    assert at.selectbox(key="q-saved").options == [f"team: overdue (team, by {LEE})"]
    assert store.frame("saved_filters")["name"].to_list() == ["team: overdue"]
