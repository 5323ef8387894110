"""Opening the review console in a test: the app file, and AppTest as a local-mode reviewer on a store.

Every console test drives ``dashboards/app.py`` the same way: point ``CHORUS_STORE__URL`` at the test's
store, name the local reviewer and their role (``CHORUS_REVIEWER``, ``CHORUS_REVIEWER_ROLE``, read by
the configuration as the console reads them), run the app once and check it raised nothing.
``tests/conftest.py`` wires :func:`console_opener` up as the ``console_opener`` fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from stream.store.database import Store

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


def store_url(store: Store | str) -> str:
    """The URL the console opens ``store`` by, its password kept (the console must log in with it)."""
    return store if isinstance(store, str) else store.engine.url.render_as_string(hide_password=False)


def console_opener(
    monkeypatch: pytest.MonkeyPatch, store: Store | str, reviewer: str, *, timeout: float = 60
) -> Callable[..., AppTest]:
    """``open_console(reviewer=reviewer, role="reviewer")``: the app run once as that local-mode reviewer on
    ``store`` (a Store or its URL), asserted to have raised nothing. Each call is a new browser session."""

    def open_console(as_reviewer: str = reviewer, role: str = "reviewer") -> AppTest:
        monkeypatch.setenv("CHORUS_STORE__URL", store_url(store))
        monkeypatch.setenv("CHORUS_REVIEWER", as_reviewer)
        monkeypatch.setenv("CHORUS_REVIEWER_ROLE", role)
        at = AppTest.from_file(str(APP), default_timeout=timeout).run()
        assert not at.exception, at.exception
        return at

    return open_console
