"""The store on both databases: migrations, idempotent batch writes, review state, the audit log.

Every test runs on SQLite (a temp file) and on PostgreSQL when CHORUS_TEST_PG_URL is set; each
PostgreSQL test gets a schema of its own (via ``search_path`` in the URL), dropped afterwards.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from stream.store import migrations
from stream.store.database import Store
from stream.store.tables import TABLES

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
#: Tables whose rows a replay must leave exactly as they were.
IDEMPOTENT_TABLES = ("posts", "detector_results", "flags", "dead_letters")


@pytest.fixture
def db_url(review_db_url: str) -> str:
    """An empty database on each backend: conftest's ``review_db_url`` (SQLite, and PostgreSQL when
    CHORUS_TEST_PG_URL is set; start one with `eval "$(bash .ci/postgres.sh)"`)."""
    return review_db_url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        yield opened


# ---------------------------------------------------------------------------------------------
# Rows as the worker builds them


def make_post(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "post_id": f"p{i}",
        "account_id": f"a{i % 7}",
        "created_at": T0 + timedelta(seconds=i),
        "text": f"post number {i} — with ünïcode",
        "lang": "en",
        "reply_to": f"p{i - 1}" if i % 3 == 0 and i else None,
        "urls": [f"https://news.example/{i}"],
        "hashtags": ["election"],
        "mentions": [],
        "meta": {"client": "web", "i": i},
        "schema_version": 1,
        "source_topic": "posts",
        "source_partition": i % 3,
        "source_offset": 1000 + i,
        "ingested_at": T0 + timedelta(minutes=1),
        **changes,
    }


def make_result(i: int, **changes: Any) -> dict[str, Any]:
    score = (i % 10) / 10
    return {
        "post_id": f"p{i}",
        "detector": "boilerplate",
        "model_version": "boilerplate-1",
        "score": score,
        "probability": float("nan"),  # uncalibrated, as detectors report it
        "threshold_name": "default",
        "threshold": 0.75,
        "flagged": score >= 0.75,
        "evidence": {"phrases": ["as an AI language model"], "hits": i % 4},
        "scored_at": T0 + timedelta(minutes=2),
        **changes,
    }


def make_flag(i: int, **changes: Any) -> dict[str, Any]:
    result = make_result(i)
    return {
        "flag_id": f"boilerplate:p{i}",
        "post_id": f"p{i}",
        "account_id": f"a{i % 7}",
        "detector": "boilerplate",
        "model_version": result["model_version"],
        "score": result["score"],
        "probability": None,
        "threshold_name": "default",
        "threshold": 0.75,
        "evidence": result["evidence"],
        "post_created_at": T0 + timedelta(seconds=i),
        "flagged_at": T0 + timedelta(minutes=2),
        **changes,
    }


def make_dead_letter(offset: int, **changes: Any) -> dict[str, Any]:
    return {
        "source_topic": "posts",
        "source_partition": 0,
        "source_offset": offset,
        "reason": "not_json",
        "error": "Expecting value: line 1 column 1 (char 0)",
        "key": None,
        "value": b"\xff\x00not json",
        "received_at": T0 + timedelta(minutes=1),
        "worker_id": "worker-1",
        **changes,
    }


def make_batch(n: int = 30, *, start: int = 0) -> dict[str, Any]:
    ids = range(start, start + n)
    return {
        "posts": [make_post(i) for i in ids],
        "results": [make_result(i) for i in ids],
        "flags": [make_flag(i) for i in ids if make_result(i)["flagged"]],
        "dead_letters": [make_dead_letter(i) for i in ids if i % 10 == 0],
        "metrics": {
            "worker_id": "worker-1",
            "batch_size": n,
            "valid": n,
            "rejected": 0,
            "flagged": 3,
            "lag_total": 12,
            "lag": {"0": 5, "1": 7},
            "timings": {"decode": 1.5, "score": 20.0, "store": 4.0},
            "posts_per_s": 1234.5,
        },
    }


def snapshot(store: Store) -> dict[str, pl.DataFrame]:
    return {table: store.frame(table) for table in IDEMPOTENT_TABLES}


def assert_same(before: dict[str, pl.DataFrame], after: dict[str, pl.DataFrame]) -> None:
    for table, frame in before.items():
        assert_frame_equal(after[table], frame, check_exact=True)  # the failing table is in `table`


# ---------------------------------------------------------------------------------------------
# Migrations


def test_migrate_applies_every_version_once_and_is_idempotent(db_url: str) -> None:
    head = migrations.HEAD_VERSION
    with Store.open(db_url, migrate=False) as empty:
        assert empty.schema_version() == 0
        assert empty.migrate() == list(range(1, head + 1))
        assert empty.schema_version() == head
        assert empty.migrate() == []
    with Store.open(db_url) as again:  # a second start migrates again: nothing to do
        assert again.schema_version() == head
        assert again.count("schema_migrations") == head
        assert set(sa.inspect(again.engine).get_table_names()) == set(TABLES)


def test_schema_matches_table_definitions(store: Store) -> None:
    """What the migrations built is what stream/store/tables.py describes (guards against drift)."""
    inspector = sa.inspect(store.engine)
    for name, table in TABLES.items():
        assert {c["name"] for c in inspector.get_columns(name)} == set(table.columns.keys()), name
        assert inspector.get_pk_constraint(name)["constrained_columns"] == [c.name for c in table.primary_key]
        built = {ix["name"] for ix in inspector.get_indexes(name)}
        assert {ix.name for ix in table.indexes} <= built, name


def test_appended_migration_is_applied_once(store: Store) -> None:
    def add_scratch_table(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE scratch_v2 (id INTEGER PRIMARY KEY)")

    newer = migrations.HEAD_VERSION + 1
    steps = (*migrations.MIGRATIONS, migrations.Migration(newer, "scratch table", add_scratch_table))
    with store.transaction() as conn:
        assert migrations.upgrade(conn, steps) == [newer]
    with store.transaction() as conn:
        assert migrations.upgrade(conn, steps) == []
    assert store.schema_version() == newer
    # This release stops one version short: it must refuse to write to the newer schema.
    with pytest.raises(RuntimeError, match="upgrade Chorus"):
        store.migrate()


def test_migrations_must_be_numbered_in_order() -> None:
    step = migrations.MIGRATIONS[0]
    with pytest.raises(ValueError, match="1, 2, 3"):
        migrations.check_order((step, migrations.Migration(3, "gap", step.apply)))


def _migrate_and_write(url: str, worker: int, barrier: Any) -> None:
    """Child process: start at the same moment as its sibling, migrate, write overlapping batches."""
    barrier.wait(timeout=60)
    with Store.open(url) as store:
        for batch in range(5):
            own = make_batch(40, start=10_000 * (worker + 1) + 40 * batch)
            shared = make_batch(10, start=10 * batch)  # the same rows from both processes
            store.write_batch(
                posts=own["posts"] + shared["posts"],
                results=own["results"] + shared["results"],
                flags=own["flags"] + shared["flags"],
                dead_letters=own["dead_letters"] + shared["dead_letters"],
                metrics={**own["metrics"], "worker_id": f"worker-{worker}"},
            )


def test_two_processes_migrate_and_write_at_once(db_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_migrate_and_write, args=(db_url, w, barrier)) for w in range(2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=180)
    assert [p.exitcode for p in workers] == [0, 0], "a writer failed; its traceback is in the captured stderr"
    with Store.open(db_url) as store:
        assert store.count("schema_migrations") == migrations.HEAD_VERSION
        assert store.count("posts") == 2 * 5 * 40 + 5 * 10
        assert store.count("detector_results") == 2 * 5 * 40 + 5 * 10
        assert store.count("worker_metrics") == 2 * 5


# ---------------------------------------------------------------------------------------------
# write_batch


def test_replay_changes_nothing(store: Store) -> None:
    batch = make_batch()
    store.write_batch(**batch)
    first = snapshot(store)
    assert {t: f.height for t, f in first.items()} == {
        "posts": 30,
        "detector_results": 30,
        "flags": 6,
        "dead_letters": 3,
    }

    store.write_batch(**batch)
    assert_same(first, snapshot(store))

    # A replay after a crash comes with fresh timestamps; first-seen times must not move.
    later = T0 + timedelta(hours=5)
    store.write_batch(
        posts=[{**p, "ingested_at": later} for p in batch["posts"]],
        results=[{**r, "scored_at": later} for r in batch["results"]],
        flags=[{**f, "flagged_at": later} for f in batch["flags"]],
        dead_letters=[{**d, "received_at": later} for d in batch["dead_letters"]],
    )
    assert_same(first, snapshot(store))
    assert store.count("worker_metrics") == 2  # metrics are a log: one row per written batch


def test_changed_rows_are_updated(store: Store) -> None:
    store.write_batch(posts=[make_post(1)], results=[make_result(1)], flags=[], dead_letters=[])
    later = T0 + timedelta(hours=1)
    store.write_batch(
        posts=[make_post(1, text="edited", source_offset=9999, ingested_at=later)],
        results=[make_result(1, model_version="boilerplate-2", score=0.9, scored_at=later)],
        flags=[],
        dead_letters=[],
    )
    post = store.frame("posts").row(0, named=True)
    assert (post["text"], post["source_offset"], post["ingested_at"]) == ("edited", 9999, T0 + timedelta(minutes=1))
    result = store.frame("detector_results").row(0, named=True)
    assert (result["model_version"], result["score"], result["scored_at"]) == ("boilerplate-2", 0.9, later)


def test_duplicate_keys_in_one_batch_keep_the_last(store: Store) -> None:
    store.write_batch(
        posts=[make_post(1, text="first"), make_post(1, text="second")],
        results=[make_result(1), make_result(1, score=0.5)],
        flags=[],
        dead_letters=[],
    )
    assert store.frame("posts")["text"].to_list() == ["second"]
    assert store.frame("detector_results")["score"].to_list() == [0.5]


def test_flag_upsert_keeps_review_state(store: Store) -> None:
    store.write_batch(posts=[make_post(7)], results=[make_result(7)], flags=[make_flag(7)], dead_letters=[])
    assert store.frame("flags")["status"].to_list() == ["open"]

    claimed_at = T0 + timedelta(hours=3)
    with store.transaction() as conn:
        flags = TABLES["flags"]
        conn.execute(
            flags.update()
            .where(flags.c.flag_id == "boilerplate:p7")
            .values(status="claimed", assignee="reviewer-1", claimed_at=claimed_at)
        )

    # Replay, re-score with a new model, and even a row that carries status="open": review state stays.
    store.write_batch(posts=[make_post(7)], results=[make_result(7)], flags=[make_flag(7)], dead_letters=[])
    store.write_batch(
        posts=[],
        results=[],
        flags=[make_flag(7, model_version="boilerplate-2", score=0.95, status="open")],
        dead_letters=[],
    )
    flag = store.frame("flags").row(0, named=True)
    assert (flag["status"], flag["assignee"], flag["claimed_at"]) == ("claimed", "reviewer-1", claimed_at)
    assert (flag["model_version"], flag["score"]) == ("boilerplate-2", 0.95)
    assert flag["flagged_at"] == T0 + timedelta(minutes=2)


def test_dead_letters_are_insert_or_ignore(store: Store) -> None:
    letters = [make_dead_letter(1), make_dead_letter(2, reason="missing_field", key=b"k2")]
    store.write_batch(posts=[], results=[], flags=[], dead_letters=letters)
    store.write_batch(posts=[], results=[], flags=[], dead_letters=letters)
    store.write_batch(posts=[], results=[], flags=[], dead_letters=[make_dead_letter(1, error="other")])
    frame = store.frame("dead_letters")
    assert frame["source_offset"].to_list() == [1, 2]
    assert frame["reason"].to_list() == ["not_json", "missing_field"]
    assert frame["error"].to_list() == [make_dead_letter(1)["error"]] * 2  # the first one stays
    assert frame["value"].to_list() == [b"\xff\x00not json"] * 2  # original bytes, NUL included
    assert frame["key"].to_list() == [None, b"k2"]


def test_write_batch_is_one_transaction(store: Store) -> None:
    broken = make_result(3)
    del broken["flagged"]  # NOT NULL: the statement after the posts fails
    with pytest.raises(sa.exc.IntegrityError):
        store.write_batch(posts=[make_post(3)], results=[broken], flags=[], dead_letters=[])
    assert store.count("posts") == 0


def test_unknown_keys_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match=r"posts row 1 has unknown keys \['txt'\]"):
        store.write_batch(posts=[make_post(1), {**make_post(2), "txt": "typo"}], results=[], flags=[], dead_letters=[])


def test_naive_timestamps_are_refused(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.write_batch(
            posts=[make_post(1, created_at=datetime(2024, 5, 1, 12))], results=[], flags=[], dead_letters=[]
        )


def test_values_read_back_the_same_on_both_databases(store: Store) -> None:
    """Offsets become UTC, NaN becomes NULL, numpy values are stored as plain numbers."""
    store.write_batch(
        posts=[make_post(1, created_at="2024-05-01T14:00:00+02:00"), make_post(2, created_at="2024-05-01T12:00:00Z")],
        results=[
            make_result(1, score=np.float32(0.5), flagged=np.bool_(True), evidence={"p": np.float64("nan")}),
            make_result(2, probability=np.float64(0.25), evidence={"v": np.arange(3), "x": float("inf")}),
        ],
        flags=[],
        dead_letters=[],
    )
    posts = store.frame("posts")
    assert posts["created_at"].to_list() == [T0, T0]
    assert posts.schema["created_at"] == pl.Datetime("us", "UTC")
    results = store.frame("detector_results")
    assert results["score"].to_list() == [0.5, 0.2]
    assert results["flagged"].to_list() == [True, False]
    assert results["probability"].to_list() == [None, 0.25]
    assert [json.loads(e) for e in results["evidence"]] == [{"p": None}, {"v": [0, 1, 2], "x": None}]


# ---------------------------------------------------------------------------------------------
# Audit log, transactions, reads


def test_audit_log_is_append_only(store: Store) -> None:
    first = store.append_audit(
        actor="reviewer-1",
        action="flag.claim",
        subject_type="flag",
        subject_id="boilerplate:p1",
        before={"status": "open"},
        after={"status": "claimed"},
    )
    with store.transaction() as conn:
        second = store.append_audit(
            actor="reviewer-1", action="flag.dismiss", subject_type="flag", subject_id="boilerplate:p1",
            before={"status": "claimed"}, after={"status": "dismissed"}, conn=conn,
        )  # fmt: skip
    assert second > first

    attacks = ["UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log"]
    if store.dialect == "postgresql":
        attacks.append("TRUNCATE audit_log")
    for sql in attacks:
        with pytest.raises(sa.exc.DBAPIError, match="audit_log is append-only"), store.transaction() as conn:
            conn.exec_driver_sql(sql)

    audit = store.frame("audit_log")
    assert audit["audit_id"].to_list() == [first, second]
    assert audit["actor"].to_list() == ["reviewer-1", "reviewer-1"]
    assert json.loads(audit["after"][1]) == {"status": "dismissed"}


def test_transaction_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as conn:
        store.append_audit(
            actor="a", action="x", subject_type="post", subject_id="p1", before=None, after=None, conn=conn
        )
        raise RuntimeError("boom")
    assert store.count("audit_log") == 0


def test_review_tables_hold_campaigns_and_decisions(store: Store) -> None:
    campaigns, members, decisions = TABLES["campaigns"], TABLES["campaign_members"], TABLES["review_decisions"]
    with store.transaction() as conn:
        conn.execute(campaigns.insert().values(campaign_id="c1", first_seen=T0, last_seen=T0, size=2, score=0.8))
        conn.execute(
            members.insert(),
            [
                {"campaign_id": "c1", "account_id": f"a{i}", "weight": 0.5, "evidence": {"shared_urls": i}}
                for i in (1, 2)
            ],
        )
        first = conn.execute(
            decisions.insert().values(
                subject_type="campaign",
                subject_id="c1",
                decision="confirmed",
                reason_code="coordinated",
                statement="same link from 2 accounts within 60 s",
                reviewer="reviewer-1",
            )
        ).inserted_primary_key[0]
        conn.execute(
            decisions.insert().values(
                subject_type="campaign",
                subject_id="c1",
                decision="dismissed",
                reviewer="reviewer-2",
                reverses_decision_id=first,
            )
        )
    assert store.frame("campaigns")["status"].to_list() == ["open"]
    assert store.frame("review_decisions")["reverses_decision_id"].to_list() == [None, first]

    # The database keeps the review vocabulary: no unknown flag states or subject types.
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as conn:
        conn.execute(decisions.insert().values(subject_type="user", subject_id="x", decision="d", reviewer="r"))
    store.write_batch(posts=[make_post(1)], results=[], flags=[make_flag(1)], dead_letters=[])
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as conn:
        conn.execute(TABLES["flags"].update().values(status="maybe"))
    # Members go with their campaign.
    with store.transaction() as conn:
        conn.execute(campaigns.delete())
    assert store.count("campaign_members") == 0


def test_frame_returns_rows(store: Store) -> None:
    store.write_batch(**make_batch(20))
    posts = store.frame("posts")
    assert posts.height == 20
    assert posts.columns == list(TABLES["posts"].columns.keys())
    assert sorted(posts["post_id"].to_list()) == sorted(f"p{i}" for i in range(20))
    assert json.loads(posts.filter(pl.col("post_id") == "p4")["urls"].item()) == ["https://news.example/4"]
    assert store.frame("posts", where="account_id = 'a1'")["post_id"].sort().to_list() == ["p1", "p15", "p8"]
    assert store.frame("posts", limit=5).height == 5

    metrics = store.frame("worker_metrics")
    assert json.loads(metrics["timings"].item()) == {"decode": 1.5, "score": 20.0, "store": 4.0}

    empty = store.frame("campaigns")
    assert empty.height == 0
    assert empty.schema["first_seen"] == pl.Datetime("us", "UTC")

    with pytest.raises(ValueError, match="unknown table"):
        store.frame("posts; DROP TABLE posts")
    with pytest.raises(ValueError, match="unknown table"):
        store.count("sqlite_master")


def test_write_batch_of_10k_posts_lands_every_row(db_url: str) -> None:
    """10,000 posts + 10,000 results in one batch (its speed is measured by bench/bench_pipeline.py)."""
    batch = make_batch(10_000)
    with Store.open(db_url) as store:
        store.write_batch(posts=batch["posts"], results=batch["results"], flags=[], dead_letters=[])
        assert store.count("posts") == 10_000


# ---------------------------------------------------------------------------------------------
# Opening


def test_bare_path_means_sqlite_with_the_right_settings(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "chorus.db"
    with Store.open(str(path)) as store:
        assert store.dialect == "sqlite"
        assert path.exists()
        with store.engine.connect() as conn:
            settings = {
                pragma: conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
                for pragma in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
            }
    assert settings == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 30_000}


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        Store.open("mysql://user@localhost/chorus")
