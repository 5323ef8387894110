"""A pytest plugin: in CI (``CI=true``) a skip for a missing PostgreSQL, model package or browser fails.

On a developer's laptop a missing PostgreSQL, model package or browser skips its tests; in CI that
would let a green run hide untested code (the store on PostgreSQL, the real models), so such a skip
turns into a failure that says what was missing and how CI installs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

#: Fragments of the skip reasons that mean "the environment lacks something CI always installs".
CI_MUST_RUN_REASONS = ("CHORUS_TEST_PG_URL", "model packages missing", "chromium is not installed")


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and running_in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if any(fragment in reason for fragment in CI_MUST_RUN_REASONS):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true, but this test was skipped: {reason}\n"
            "CI must run the PostgreSQL, real-model and browser tests: run `bash .ci/install` "
            "(models, chromium) and `bash .ci/test` (starts PostgreSQL), or unset CI for a local run."
        )
