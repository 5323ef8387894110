"""The reviewers' own records (migration 4), on SQLite and PostgreSQL: statement templates, team notes on
cases, saved queue filters.

What these prove: migration 4 creates the three tables; a lead creates, edits, disables and enables a
template, each change audited, names unique ignoring case, bad templates refused with the reason
(unknown placeholder, unknown reason code or kind), and reviewers and viewers refused; templates are
offered by the kinds of case they suit. A note is added to a flag, a post, an account or a campaign
with its author, time and an audit row; it is listed on the post, the account and the campaign; a
viewer cannot add one, nor can anyone note a case the store does not know; it never reaches the
labelled-decisions export nor a decision's statement. A saved filter is per reviewer, replaced by
name, shared only by a lead, deleted by its owner (or a lead for a shared one), and reapplied gives
back the same queue filter (and the same queue page).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from test_review import ALICE, BOB, LEE, NOW, VIC, _campaign, _flag, _post, fid

from stream.review import notes, saved_filters, templates
from stream.review.decisions import decide
from stream.review.labels import labelled_decisions
from stream.review.queues import FlagFilter, flag_queue
from stream.review.saved_filters import QueueChoices
from stream.store import migrations
from stream.store.database import Store
from stream.store.reviewers import InvalidDecision, PermissionDenied

BODY = "Your post {post_id} was labelled because {reason}: [[explain what was misleading]]"
SECRET = "internal: the same operator runs acct1 and acct3, per a trust and safety contact"


@pytest.fixture
def store(review_db_url: str) -> Iterator[Store]:
    """test_review's twenty posts (four accounts, each post flagged once) and camp-1 (acct1, acct3)."""
    with Store.open(review_db_url) as opened:
        opened.write_batch(
            posts=[_post(i) for i in range(20)], results=[], flags=[_flag(i) for i in range(20)], dead_letters=[]
        )
        _campaign(opened)
        yield opened


def audit_rows(store: Store, prefix: str) -> list[dict[str, Any]]:
    rows = store.frame("audit_log").sort("audit_id").to_dicts()
    for row in rows:
        row["before"] = json.loads(row["before"]) if row["before"] else None
        row["after"] = json.loads(row["after"]) if row["after"] else None
    return [r for r in rows if r["action"].startswith(prefix) or r["action"].endswith(prefix)]


def test_migration_4_creates_the_three_tables(store: Store) -> None:
    assert migrations.HEAD_VERSION >= 4 and store.schema_version() == migrations.HEAD_VERSION
    inspector = sa.inspect(store.engine)
    for table in ("statement_templates", "case_notes", "saved_filters"):
        assert inspector.has_table(table), table
    [v4] = [m for m in migrations.MIGRATIONS if m.version == 4]
    assert "templates" in v4.description and "notes" in v4.description and "filters" in v4.description


# ---------------------------------------------------------------------------------------------
# Statement templates


def test_a_lead_creates_edits_disables_and_enables_a_template_each_audited(store: Store) -> None:
    created = templates.save_template(
        store, LEE, name="Misleading AI text", body=BODY, subjects=["post"], reason_code="undisclosed_ai_text"
    )
    [template_id] = map(int, created.applied)
    [template] = templates.list_templates(store)
    assert (template.name, template.subjects, template.reason_code, template.enabled) == (
        "Misleading AI text", ("post",), "undisclosed_ai_text", True,
    )  # fmt: skip
    assert template.free_placeholders == ["[[explain what was misleading]]"]
    assert template.updated_by == LEE.name

    templates.save_template(store, LEE, name="Misleading AI text", body=BODY + " Thank you.", template_id=template_id)
    [edited] = templates.list_templates(store)
    assert edited.body.endswith("Thank you.") and edited.subjects == (), "no kinds listed: any case"

    assert templates.set_enabled(store, LEE, template_id, False).applied == [str(template_id)]
    assert templates.list_templates(store) == [], "a disabled template is not offered"
    assert [t.enabled for t in templates.list_templates(store, include_disabled=True)] == [False]
    assert templates.set_enabled(store, LEE, template_id, False).unchanged == [str(template_id)]
    templates.set_enabled(store, LEE, template_id, True)
    assert [t.template_id for t in templates.list_templates(store)] == [template_id]

    rows = audit_rows(store, "template.")
    assert [r["action"] for r in rows] == ["template.create", "template.edit", "template.disable", "template.enable"]
    assert {(r["subject_type"], r["subject_id"], r["actor"]) for r in rows} == {
        ("template", str(template_id), LEE.name)
    }
    assert rows[0]["before"] is None and rows[0]["after"]["body"] == BODY and rows[0]["after"]["role"] == "lead"
    assert rows[1]["before"]["body"] == BODY and rows[1]["after"]["body"].endswith("Thank you.")


def test_templates_are_offered_by_the_kinds_of_case_they_suit(store: Store) -> None:
    templates.save_template(store, LEE, name="Post", body="About {post_id}.", subjects=["post"])
    templates.save_template(store, LEE, name="Campaign", body="About {campaign}.", subjects=["campaign"])
    templates.save_template(store, LEE, name="Any", body="About this case.")
    names = lambda kinds: [t.name for t in templates.list_templates(store, kinds=kinds)]  # noqa: E731
    assert names(("campaign",)) == ["Any", "Campaign"]
    assert names(("post", "account")) == ["Any", "Post"]
    assert names(None) == ["Any", "Campaign", "Post"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": " "}, "needs a name"),
        ({"body": ""}, "needs a body"),
        ({"body": "Dear {acount}"}, r"\{acount\}, which no case fills"),
        ({"reason_code": "made_up"}, "unknown reason code"),
        ({"subjects": ["flag"]}, "suits post, account, campaign"),
        ({"name": "x" * 200}, "keep it under"),
    ],
)
def test_a_bad_template_is_refused_with_the_reason(store: Store, changes: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"name": "T", "body": BODY, **changes}
    with pytest.raises(InvalidDecision, match=message):
        templates.save_template(store, LEE, **values)
    assert store.count("statement_templates") == 0 and audit_rows(store, "template.") == []


def test_template_names_are_unique_ignoring_case(store: Store) -> None:
    templates.save_template(store, LEE, name="Spam", body="Spam.")
    other = int(templates.save_template(store, LEE, name="Other", body="Other.").applied[0])
    with pytest.raises(InvalidDecision, match="already a template named"):
        templates.save_template(store, LEE, name="SPAM ", body="Again.")
    with pytest.raises(InvalidDecision, match="already a template named"):
        templates.save_template(store, LEE, name="spam", body="Renamed.", template_id=other)


@pytest.mark.parametrize("who", [ALICE, VIC], ids=["reviewer", "viewer"])
def test_only_a_lead_changes_templates(store: Store, who: Any) -> None:
    with pytest.raises(PermissionDenied, match="only a lead"):
        templates.save_template(store, who, name="T", body="Text.")
    template_id = int(templates.save_template(store, LEE, name="T", body="Text.").applied[0])
    with pytest.raises(PermissionDenied, match="only a lead"):
        templates.set_enabled(store, who, template_id, False)
    assert [t.enabled for t in templates.list_templates(store, include_disabled=True)] == [True]


# ---------------------------------------------------------------------------------------------
# Team notes


def test_a_note_on_each_kind_of_case_is_listed_with_author_time_and_audited(store: Store) -> None:
    flag_note = int(notes.add_note(store, ALICE, "flag", fid(1), SECRET, now=NOW).applied[0])
    notes.add_note(store, BOB, "post", "p1", "  Same wording as p5.  ")
    notes.add_note(store, LEE, "account", "acct1", "Known operator.")
    notes.add_note(store, ALICE, "campaign", "camp-1", "Check the hashtag timing.")
    notes.add_note(store, ALICE, "flag", fid(2), "acct2's, elsewhere.")

    on_post = notes.post_notes(store, "p1")
    assert on_post.select("author", "subject_type", "subject_id", "body").rows() == [
        (BOB.name, "post", "p1", "Same wording as p5."),
        (ALICE.name, "flag", fid(1), SECRET),
    ]  # fmt: skip, newest first, stripped
    assert on_post["created_at"][1] == NOW and on_post["note_id"][1] == flag_note
    on_account = notes.account_notes(store, "acct1")
    assert on_account["body"].to_list() == ["Known operator.", "Same wording as p5.", SECRET]
    assert notes.case_notes(store, "campaign", "camp-1")["author"].to_list() == [ALICE.name]
    assert notes.case_notes(store, "campaign", "camp-2").is_empty()

    rows = audit_rows(store, ".note")
    assert [(r["action"], r["subject_type"], r["subject_id"], r["actor"]) for r in rows] == [
        ("flag.note", "flag", fid(1), ALICE.name), ("post.note", "post", "p1", BOB.name),
        ("account.note", "account", "acct1", LEE.name), ("campaign.note", "campaign", "camp-1", ALICE.name),
        ("flag.note", "flag", fid(2), ALICE.name),
    ]  # fmt: skip
    assert rows[0]["after"] == {"note_id": flag_note, "chars": len(SECRET), "role": "reviewer"}


def test_a_viewer_cannot_add_a_note_nor_anyone_an_empty_one_or_one_on_nothing(store: Store) -> None:
    with pytest.raises(PermissionDenied, match="a viewer cannot add a note"):
        notes.add_note(store, VIC, "flag", fid(1), "I think so too.")
    with pytest.raises(InvalidDecision, match="the note is empty"):
        notes.add_note(store, ALICE, "flag", fid(1), "   ")
    with pytest.raises(InvalidDecision, match="no flag nope"):
        notes.add_note(store, ALICE, "flag", "nope", "Hello.")
    with pytest.raises(InvalidDecision, match="no account nobody"):
        notes.add_note(store, ALICE, "account", "nobody", "Hello.")
    with pytest.raises(InvalidDecision, match="not a 'decision'"):
        notes.add_note(store, ALICE, "decision", "1", "Hello.")
    assert store.count("case_notes") == 0 and audit_rows(store, ".note") == []


def test_notes_stay_out_of_the_export_and_the_statement(store: Store) -> None:
    notes.add_note(store, ALICE, "flag", fid(1), SECRET)
    notes.add_note(store, ALICE, "post", "p1", SECRET)
    decide(store, ALICE, [fid(1)], "label", "undisclosed_ai_text", "A chatbot's boilerplate, undisclosed.")
    export = labelled_decisions(store, include_text=True)
    assert export["flag_id"].to_list() == [fid(1)]
    csv = export.write_csv()
    assert SECRET not in csv and "operator" not in csv
    [statement] = store.frame("review_decisions")["statement"].to_list()
    assert SECRET not in statement


# ---------------------------------------------------------------------------------------------
# Saved filters

CHOICES = QueueChoices(
    search="AI", statuses=("open", "escalated"), detectors=("aitext",), langs=("en", "fr"), account="acct",
    min_score=0.52, age="older_than_day", assigned="unassigned", sort="oldest",
)  # fmt: skip


def test_a_saved_filter_reapplies_its_filters(store: Store) -> None:
    [filter_id] = saved_filters.save_filter(store, ALICE, "German aitext", CHOICES).applied
    [saved] = saved_filters.saved_filters(store, ALICE.name)
    assert (saved.filter_id, saved.name, saved.owner, saved.shared) == (
        int(filter_id),
        "German aitext",
        ALICE.name,
        False,
    )
    assert saved.choices == CHOICES and saved.choices.dropped == ()
    flt = saved.choices.flag_filter(reviewer=ALICE.name, sla_s=3_600)
    assert flt == FlagFilter(
        statuses=("open", "escalated"), detectors=("aitext",), langs=("en", "fr"), account="acct", assignee="",
        min_score=0.52, min_age_s=86_400.0, search="AI", sort="oldest",
    )  # fmt: skip
    # aitext flags the odd posts; p1 is German and scores 0.51; flags after p6 are under 24 hours old at NOW.
    assert flag_queue(store, flt, now=NOW).rows["flag_id"].to_list() == [fid(3), fid(5)]
    me = QueueChoices(assigned="me", age="overdue").flag_filter(reviewer=BOB.name, sla_s=7_200)
    assert (me.assignee, me.min_age_s) == (BOB.name, 7_200), "'me' and the SLA are the applier's"


def test_saved_filters_are_per_reviewer_replaced_by_name_and_shared_by_leads(store: Store) -> None:
    first = saved_filters.save_filter(store, ALICE, "mine", QueueChoices(sort="newest")).applied
    assert saved_filters.save_filter(store, ALICE, "mine", CHOICES).applied == first, "same name: replaced"
    saved_filters.save_filter(store, BOB, "mine", QueueChoices())
    with pytest.raises(PermissionDenied, match="only a lead shares"):
        saved_filters.save_filter(store, ALICE, "for all", CHOICES, shared=True)
    saved_filters.save_filter(store, LEE, "team: overdue", QueueChoices(age="overdue"), shared=True)
    saved_filters.save_filter(store, LEE, "lee's own", QueueChoices())

    alice = saved_filters.saved_filters(store, ALICE.name)
    assert [(f.name, f.owner, f.shared) for f in alice] == [
        ("mine", ALICE.name, False),
        ("team: overdue", LEE.name, True),
    ]
    assert alice[0].choices == CHOICES
    assert (
        alice[0].label(ALICE.name) == "mine (yours)"
        and alice[1].label(ALICE.name) == f"team: overdue (team, by {LEE.name})"
    )
    assert [f.name for f in saved_filters.saved_filters(store, VIC.name)] == ["team: overdue"]
    with pytest.raises(InvalidDecision, match="needs a name"):
        saved_filters.save_filter(store, ALICE, "  ", CHOICES)
    with pytest.raises(InvalidDecision, match="unknown sort"):
        saved_filters.save_filter(store, ALICE, "bad", QueueChoices(sort="random"))


def test_deleting_a_saved_filter(store: Store) -> None:
    mine = int(saved_filters.save_filter(store, ALICE, "mine", CHOICES).applied[0])
    shared = int(saved_filters.save_filter(store, LEE, "team", CHOICES, shared=True).applied[0])
    with pytest.raises(PermissionDenied, match="only they"):
        saved_filters.delete_filter(store, BOB, mine)
    with pytest.raises(PermissionDenied, match="only they"):
        saved_filters.delete_filter(store, ALICE, shared)
    assert saved_filters.delete_filter(store, ALICE, mine).applied == [str(mine)]
    assert saved_filters.delete_filter(store, ALICE, mine).unchanged == [str(mine)]
    other_lead = type(LEE)("lou@example.org", "lead")
    assert saved_filters.delete_filter(store, other_lead, shared).applied == [str(shared)]
    assert store.count("saved_filters") == 0


def test_a_saved_filter_keeps_what_the_queue_still_offers() -> None:
    choices = QueueChoices.from_saved(
        {"statuses": ["open", "gone"], "sort": "random", "age": "last_hour", "assigned": "me", "min_score": "x",
         "detectors": ["aitext"], "unexpected": 1}
    )  # fmt: skip
    assert choices.statuses == ("open",) and choices.sort == "score" and choices.age == "last_hour"
    assert choices.assigned == "me" and choices.min_score is None and choices.detectors == ("aitext",)
    assert choices.dropped == ("statuses: gone", "sort: random")
    assert QueueChoices.from_saved({}) == QueueChoices()
