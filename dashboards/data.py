"""The console's one data-access module: cached reads and audited actions over :mod:`stream.review`.

Pages call only this module. Reads are wrapped in ``st.cache_data`` with a short TTL, keyed by
the store URL and the (frozen, hashable) filter, so reruns and other reviewers' sessions share
results and a page of a 100,000-flag queue costs one indexed query every few seconds at most.
Every action goes straight to :mod:`stream.review` (never cached; it validates against the
database, not against what the cache showed) and then clears the read cache, so the reviewer sees
the effect of their action at once. Other reviewers' changes show up within :data:`READ_TTL_S`;
a conflict caused by a stale screen is caught by the optimistic checks and explained.

Settings come from the Chorus configuration (``--config FILE`` after ``--``, ``CHORUS_CONFIG``,
``CHORUS_*`` variables), read once per session by :meth:`ChorusConfig.load`: the review SLA is
``[review] sla_hours`` (``CHORUS_REVIEW__SLA_HOURS``, 24 hours by default) and links of campaigns
stored without evidence are computed with the ``[coordinator]`` networks and windows. The store
URL comes from ``streamlit run dashboards/app.py -- --store URL`` (what ``chorus console`` runs),
else from the configuration's ``[store] url``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import polars as pl
import streamlit as st

from stream.config import ChorusConfig, ConsoleConfig, CoordinatorSettings
from stream.policy import actions as policy_actions
from stream.policy import compare, registry
from stream.policy.actions import ActionFilter
from stream.review import account_page, accounts, campaigns, claims, history, labels, metrics, posts, queues, search
from stream.review.queues import CampaignFilter, FlagFilter
from stream.store.database import Store
from stream.store.reading import QueuePage
from stream.store.reviewers import Outcome, Reviewer, ReviewError

#: How long a cached read may be shown before it is read again (seconds).
READ_TTL_S = 10
#: Session-state key of the banner shown after an action's rerun.
NOTICE_KEY = "chorus_notice"


@dataclass(frozen=True)
class ConsoleSettings:
    """Where the console reads, how it measures the SLA, how it infers links, who local mode's reviewer
    is; resolved once per session."""

    store_url: str
    sla: timedelta
    coordination: CoordinatorSettings
    console: ConsoleConfig


def settings() -> ConsoleSettings:
    """The console's settings: the Chorus configuration, with ``--store`` after ``--`` winning for the URL."""
    if "chorus_settings" not in st.session_state:
        parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        parser.add_argument("--store")
        parser.add_argument("--config")
        args, _ = parser.parse_known_args(sys.argv[1:])
        config = ChorusConfig.load(args.config)
        st.session_state["chorus_settings"] = ConsoleSettings(
            args.store or config.store.url, config.review.sla, config.coordinator, config.console
        )
    return st.session_state["chorus_settings"]


@st.cache_resource(show_spinner=False)
def _open_store(url: str) -> Store:
    """One Store (connection pool) per URL for the whole server: sessions share it."""
    return Store.open(url)


def store() -> Store:
    return _open_store(settings().store_url)


def store_label() -> str:
    """The store's URL for people: the password hidden."""
    return store().engine.url.render_as_string(hide_password=True)


# --------------------------------------------------------------------------------------------
# Cached reads (keyed by URL so two consoles on two stores never mix)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _flag_queue(url: str, flt: FlagFilter, limit: int, offset: int, sla_s: float) -> QueuePage:
    return queues.flag_queue(_open_store(url), flt, limit=limit, offset=offset, sla=timedelta(seconds=sla_s))


def flag_queue(flt: FlagFilter, *, limit: int, offset: int) -> QueuePage:
    s = settings()
    return _flag_queue(s.store_url, flt, limit, offset, s.sla.total_seconds())


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _campaign_queue(url: str, flt: CampaignFilter, limit: int, offset: int, sla_s: float) -> QueuePage:
    return queues.campaign_queue(_open_store(url), flt, limit=limit, offset=offset, sla=timedelta(seconds=sla_s))


def campaign_queue(flt: CampaignFilter, *, limit: int, offset: int) -> QueuePage:
    s = settings()
    return _campaign_queue(s.store_url, flt, limit, offset, s.sla.total_seconds())


@st.cache_data(ttl=60, show_spinner=False)
def _facets(url: str) -> dict[str, list[str]]:
    return queues.facets(_open_store(url))


def facets() -> dict[str, list[str]]:
    return _facets(settings().store_url)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _post_detail(url: str, post_id: str) -> dict[str, Any] | None:
    return posts.post_detail(_open_store(url), post_id)


def post_detail(post_id: str) -> dict[str, Any] | None:
    return _post_detail(settings().store_url, post_id)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _post_of_flag(url: str, flag_id: str) -> str | None:
    return posts.post_of_flag(_open_store(url), flag_id)


def post_of_flag(flag_id: str) -> str | None:
    return _post_of_flag(settings().store_url, flag_id)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _account_summary(url: str, account_id: str) -> dict[str, Any]:
    return accounts.account_summary(_open_store(url), account_id)


def account_summary(account_id: str) -> dict[str, Any]:
    return _account_summary(settings().store_url, account_id)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _account_posts(url: str, account_id: str) -> pl.DataFrame:
    return accounts.account_posts(_open_store(url), account_id)


def account_posts(account_id: str) -> pl.DataFrame:
    return _account_posts(settings().store_url, account_id)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _campaign_detail(url: str, campaign_id: str, coordination: CoordinatorSettings) -> dict[str, Any] | None:
    return campaigns.campaign_detail(_open_store(url), campaign_id, coordination=coordination)


def campaign_detail(campaign_id: str) -> dict[str, Any] | None:
    s = settings()
    return _campaign_detail(s.store_url, campaign_id, s.coordination)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _posts_by_id(url: str, post_ids: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return posts.posts_by_id(_open_store(url), post_ids)


def posts_by_id(post_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    return _posts_by_id(settings().store_url, tuple(post_ids))


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _decision_history(url: str, reviewer: str | None, limit: int, offset: int) -> pl.DataFrame:
    return history.decision_history(_open_store(url), reviewer=reviewer, limit=limit, offset=offset)


def decision_history(*, reviewer: str | None, limit: int, offset: int) -> pl.DataFrame:
    return _decision_history(settings().store_url, reviewer, limit, offset)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _audit_trail(url: str, subject_id: str | None, actor: str | None, limit: int, offset: int) -> pl.DataFrame:
    return history.audit_trail(_open_store(url), subject_id=subject_id, actor=actor, limit=limit, offset=offset)


def audit_trail(
    *, subject_id: str | None = None, actor: str | None = None, limit: int = 200, offset: int = 0
) -> pl.DataFrame:
    return _audit_trail(settings().store_url, subject_id or None, actor or None, limit, offset)


@st.cache_data(ttl=60, show_spinner=False)
def _labelled_decisions_csv(url: str, include_text: bool) -> bytes:
    return labels.labelled_decisions(_open_store(url), include_text=include_text).write_csv().encode()


def labelled_decisions_csv(*, include_text: bool) -> bytes:
    """The labelled-decisions export as CSV; the posts' text only when ``include_text``
    (:func:`dashboards.auth.can_export_text` decides who gets it)."""
    return _labelled_decisions_csv(settings().store_url, include_text)


@st.cache_data(ttl=30, show_spinner=False)
def _overview(url: str, sla_s: float, volume_by: str, unit: str) -> dict[str, Any]:
    s = _open_store(url)
    return {
        "sizes": queues.queue_sizes(s, sla=timedelta(seconds=sla_s)),
        "volume": metrics.flag_volume(s, by=volume_by, unit=unit),
        "throughput": metrics.worker_throughput(s),
        "precision": labels.detector_precision(s, cutoffs=(0.5, 0.7, 0.9, 0.99)),
        "dead_letters": metrics.dead_letter_reasons(s),
        "decisions": metrics.decisions_by_reviewer(s),
    }


def overview(*, volume_by: str, unit: str) -> dict[str, Any]:
    s = settings()
    return _overview(s.store_url, s.sla.total_seconds(), volume_by, unit)


def quick_search(text: str) -> search.Found | None:
    """What the frame's quick search box names (:func:`stream.review.search.find`); read fresh, as an
    action is: it runs once per search, on Enter."""
    return search.find(store(), text)


# --------------------------------------------------------------------------------------------
# Automated actions of the policies (reads)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _action_list(url: str, flt: ActionFilter, limit: int, offset: int) -> QueuePage:
    return policy_actions.action_list(_open_store(url), flt, limit=limit, offset=offset)


def action_list(flt: ActionFilter, *, limit: int, offset: int) -> QueuePage:
    return _action_list(settings().store_url, flt, limit, offset)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _action_detail(url: str, action_id: str) -> dict[str, Any] | None:
    return policy_actions.action_detail(_open_store(url), action_id)


def action_detail(action_id: str) -> dict[str, Any] | None:
    return _action_detail(settings().store_url, action_id)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _action_counts(url: str) -> pl.DataFrame:
    return policy_actions.action_counts(_open_store(url))


def action_counts() -> pl.DataFrame:
    return _action_counts(settings().store_url)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _open_breakers(url: str) -> pl.DataFrame:
    return policy_actions.open_breakers(_open_store(url))


def open_breakers() -> pl.DataFrame:
    """Rules whose circuit breaker is open now (the sidebar and the actions page warn about them)."""
    return _open_breakers(settings().store_url)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _alert_list(url: str, unacknowledged_only: bool) -> pl.DataFrame:
    return policy_actions.alert_list(_open_store(url), unacknowledged_only=unacknowledged_only)


def alert_list(*, unacknowledged_only: bool) -> pl.DataFrame:
    return _alert_list(settings().store_url, unacknowledged_only)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _policy_slots(url: str) -> dict[str, tuple[str, str] | None]:
    return registry.read_slots(_open_store(url))


def policy_slots() -> dict[str, tuple[str, str] | None]:
    """Which policy version is active and which is in shadow (``chorus policy activate|shadow``)."""
    return _policy_slots(settings().store_url)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _shadow_comparison(url: str) -> pl.DataFrame | None:
    return compare.compare_slots(_open_store(url))


def shadow_comparison() -> pl.DataFrame | None:
    """Per rule of the shadow policy: posts, overlap with the active one, reviewer agreement."""
    return _shadow_comparison(settings().store_url)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _post_actions(url: str, post_id: str) -> pl.DataFrame:
    return policy_actions.post_actions(_open_store(url), post_id)


def post_actions(post_id: str) -> pl.DataFrame:
    """Every automated action on one post, with ``in_force`` and ``why_not`` (the post view lists them)."""
    return _post_actions(settings().store_url, post_id)


# --------------------------------------------------------------------------------------------
# The account page (views/account.py)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _account_record(url: str, account_id: str) -> dict[str, Any]:
    s = _open_store(url)
    return {
        "counts": account_page.account_counts(s, account_id),
        "flags": account_page.account_flags(s, account_id),
        "share": account_page.machine_share_by_day(s, account_id),
        "campaigns": account_page.account_campaigns(s, account_id),
        "actions": account_page.account_actions(s, account_id),
        "decisions": account_page.account_decisions(s, account_id),
        "audit": account_page.account_audit(s, account_id),
    }


def account_record(account_id: str) -> dict[str, Any]:
    """Everything the account page shows but its posts: ``counts``, ``flags``, ``share`` (per day),
    ``campaigns``, ``actions``, ``decisions``, ``audit`` (see :mod:`stream.review.account_page`)."""
    return _account_record(settings().store_url, account_id)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _account_post_page(url: str, account_id: str, limit: int, offset: int) -> QueuePage:
    return account_page.account_post_page(_open_store(url), account_id, limit=limit, offset=offset)


def account_post_page(account_id: str, *, limit: int, offset: int) -> QueuePage:
    """A page of the account's posts, newest first, each with its flags and probability."""
    return _account_post_page(settings().store_url, account_id, limit, offset)


def account_link(account_id: str) -> NoReturn:
    """Open the account page on ``account_id``: what any page calls where an account id is shown.

    Call it from a button (``if st.button("Open account", key=...): data.account_link(account_id)``)
    with the id as stored, not as shown by ``render.visible``. It lives here, not in
    ``views/account.py``, because a page file runs when imported.
    """
    st.switch_page("views/account.py", query_params={"account": account_id})


# --------------------------------------------------------------------------------------------
# Actions


def act(action: Callable[..., Outcome], *args: Any, **kwargs: Any) -> Outcome | None:
    """Run one review action against the store, then drop cached reads and leave a notice.

    Returns the outcome, or None when the action was refused as a whole (permission, bad input):
    the refusal is left as the notice, in the reviewer's words.
    """
    try:
        outcome = action(store(), *args, **kwargs)
    except ReviewError as exc:
        notify("error", str(exc))
        return None
    st.cache_data.clear()
    level = "success" if outcome.ok and outcome.applied else "warning"
    notify(level, outcome.summary(), outcome.conflicts)
    return outcome


def next_flag(reviewer: Reviewer, flt: FlagFilter, *, exclude: Sequence[str] = ()) -> str | None:
    """The next case for "submit and next", claimed for the reviewer; retries if someone beats us to it."""
    skip = list(exclude)
    for _ in range(5):
        flag_id = queues.next_flag(store(), reviewer, flt, exclude=skip)
        if flag_id is None:
            return None
        outcome = claims.claim(store(), reviewer, [flag_id])
        if outcome.applied or outcome.unchanged:
            st.cache_data.clear()
            return flag_id
        skip.append(flag_id)
    return None


def notify(level: str, message: str, details: dict[str, str] | None = None) -> None:
    """Leave a banner for the next run (actions rerun the page, which would wipe a banner shown now)."""
    st.session_state[NOTICE_KEY] = {"level": level, "message": message, "details": dict(details or {})}
