"""Cached reads of the team's own records: statement templates, team notes on cases, saved queue filters.

The companion of :mod:`dashboards.data` for what reviewers write for each other rather than about
cases (:mod:`stream.review.templates`, :mod:`stream.review.notes`, :mod:`stream.review.saved_filters`):
the same ``st.cache_data`` reads keyed by store URL, with :data:`dashboards.data.READ_TTL_S`. Changes
go through :func:`dashboards.data.act` like every action, which clears these caches too.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards.data import READ_TTL_S, _open_store, settings
from stream.review import notes, saved_filters, templates
from stream.review.saved_filters import SavedFilter
from stream.review.templates import StatementTemplate


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _templates(url: str, include_disabled: bool, kinds: tuple[str, ...] | None) -> list[StatementTemplate]:
    return templates.list_templates(_open_store(url), include_disabled=include_disabled, kinds=kinds)


def statement_templates(
    *, kinds: tuple[str, ...] | None = None, include_disabled: bool = False
) -> list[StatementTemplate]:
    """The templates by name: enabled ones suiting one of ``kinds`` (all kinds when None), disabled ones too
    when asked (the editor)."""
    return _templates(settings().store_url, include_disabled, kinds)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _notes(url: str, scope: str, subject_type: str, subject_id: str) -> pl.DataFrame:
    store = _open_store(url)
    if scope == "post":
        return notes.post_notes(store, subject_id)
    if scope == "account":
        return notes.account_notes(store, subject_id)
    return notes.case_notes(store, subject_type, subject_id)


def case_notes(subject_type: str, subject_id: str) -> pl.DataFrame:
    """The notes on one case (a campaign, a flag), newest first."""
    return _notes(settings().store_url, "case", subject_type, subject_id)


def post_notes(post_id: str) -> pl.DataFrame:
    """The notes on a post and its flags, newest first."""
    return _notes(settings().store_url, "post", "post", post_id)


def account_notes(account_id: str) -> pl.DataFrame:
    """The notes on an account, its posts and their flags, newest first."""
    return _notes(settings().store_url, "account", "account", account_id)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _saved_filters(url: str, reviewer: str) -> list[SavedFilter]:
    return saved_filters.saved_filters(_open_store(url), reviewer)


def queue_filters(reviewer: str) -> list[SavedFilter]:
    """``reviewer``'s saved queue filters, then the team's."""
    return _saved_filters(settings().store_url, reviewer)
