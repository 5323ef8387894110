"""Reading a detector's evidence for display, in an analyst's words.

Pure (no store, no Streamlit): the post view calls it on the ``evidence`` JSON of a detector result.
Malformed evidence is "nothing to show", never an error, because detectors' formats evolve
independently of the console.

What the detectors write, and what is read here (``tests/test_console_evidence.py`` runs the real
detectors and checks that this module reads what they wrote):

* **aitext** (:meth:`detectors.aitext.detector.AiTextDetector.evidence`): ``scored`` and
  ``not_scored_reason`` (``empty``, ``not_text``, ``binary``, ``no_words``); ``flags`` (caveats such
  as ``unsupported_script``); ``probability``; ``features`` (name -> value); ``contributions``
  (feature name, or ``embedding``, -> its share of the calibrated log-odds: positive pushes towards
  machine-written); ``top_surprisal_tokens`` (``[{"token", "position", "surprisal"}]``, surprisal in
  nats; empty for a head without language-model features, such as the default modern head).
* **llm_boilerplate** (:class:`detectors.boilerplate.LlmBoilerplateDetector`): ``phrases``, the
  leaked assistant phrases it matched (lower-cased).
* Older shapes, still read: ``{"tokens": [str, ...], "surprisal": [float | null, ...]}`` (the whole
  post, in order, shaded in place) and ``{"tokens": [{"token", "position", "surprisal"}, ...]}``
  (a top-k list, like ``top_surprisal_tokens``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.store.reading import json_object

#: What each feature of the AI-text heads measures, as an analyst would say it. Every feature a
#: committed head uses must be here (a test checks), so nobody reads ``style_punct_frac``.
FEATURE_NAMES: dict[str, str] = {
    "embedding": "sentence encoder's view of the wording",
    "fast_head_log_odds": "the fast first stage's verdict (wording, style, character n-grams)",
    "char_ngram_logit": "character n-gram style score",
    "legacy_char_ngram_logit": "character n-gram score against older, unassisted generators (GPT-2 era)",
    "enc_adapter_logit": "fine-tuned sentence encoder's verdict",
    "lm_mean_loglik": "how predictable the words are to the language model",
    "lm_mean_logrank": "how far down the language model's guesses the words are",
    "lm_mean_entropy": "how unsure the language model was of the next word",
    "lm_fast_detectgpt": "Fast-DetectGPT curvature (machine text sits on a likelihood peak)",
    "lm_binoculars": "Binoculars score (surprise against the model's own uncertainty)",
    "lm_surprisal_std": "how uneven the surprises are (burstiness)",
    "lm_surprisal_max": "the single most surprising word",
    "lm_top1_frac": "share of words that were the language model's first guess",
    "lm_top10_frac": "share of words in the language model's top 10 guesses",
    "lm_top100_frac": "share of words in the language model's top 100 guesses",
    "lm_log_n_tokens": "length in tokens",
    "style_log_chars": "length in characters",
    "style_log_words": "length in words",
    "style_mean_word_len": "average word length",
    "style_type_token_ratio": "variety of vocabulary (distinct words per word)",
    "style_upper_frac": "share of capital letters",
    "style_digit_frac": "share of digits",
    "style_punct_frac": "share of punctuation",
    "style_nonascii_frac": "share of non-ASCII characters (accents, emoji, other scripts)",
    "style_repeat_punct": "repeated punctuation (!!, ??, ..)",
    "style_ends_ellipsis": "ends with an ellipsis",
    "style_starts_upper": "starts with a capital letter",
    "style_ends_sentence_punct": "ends like a sentence (. ! ?)",
}

#: Why a post was not scored (``not_scored_reason``), in words.
NOT_SCORED: dict[str, str] = {
    "empty": "the post is empty",
    "not_text": "the post is not text",
    "binary": "the post is binary junk (undecodable bytes or control characters), not language",
    "no_words": "the post has no words to judge (emoji, hashtags or links alone)",
}

#: What each of the detector's caveats (``flags``) means for the score.
CAVEATS: dict[str, str] = {
    "unsupported_script": (
        "Mostly written in a script the models barely know (they were trained on English): the score says little here."
    ),
    "unsupported_language": (
        "Declared in a language other than English, which the models were trained on: the score is less reliable."
    ),
    "truncated_chars": "Very long post: only its first 4,000 characters were scored.",
    "truncated_tokens": "Long post: the language model read only its first tokens.",
}

TOWARDS_MACHINE, TOWARDS_HUMAN, NEUTRAL = "towards machine-written", "towards human-written", "no pull"


def feature_name(feature: str) -> str:
    """The plain name of a feature; an unknown one is spelt out from its identifier."""
    return FEATURE_NAMES.get(feature) or feature.replace("_", " ")


@dataclass(frozen=True)
class Contribution:
    """One feature's share of the calibrated log-odds (positive: towards machine-written)."""

    feature: str
    name: str
    log_odds: float
    value: float | None = None  # the feature's own value, when the evidence has it

    @property
    def direction(self) -> str:
        if self.log_odds > 0:
            return TOWARDS_MACHINE
        return TOWARDS_HUMAN if self.log_odds < 0 else NEUTRAL


@dataclass(frozen=True)
class DrivingWord:
    """A word whose character n-grams pushed the score towards machine-written: its text, its index
    among the post's words (as the detector prepared it) and the log-odds it added."""

    word: str
    position: int | None
    log_odds: float | None


@dataclass(frozen=True)
class SurprisingToken:
    """A token the language model found surprising: its text, place among the post's tokens, nats."""

    token: str
    position: int | None
    surprisal: float | None


@dataclass(frozen=True)
class Explanation:
    """Everything a detector's evidence says about one post, ready to show.

    ``scored`` is None when the evidence does not say (detectors other than aitext);
    ``contributions`` are ranked by how much they moved the score, either way.
    """

    scored: bool | None = None
    not_scored: str | None = None
    caveats: list[str] = field(default_factory=list)
    probability: float | None = None
    features: dict[str, float] = field(default_factory=dict)
    contributions: list[Contribution] = field(default_factory=list)
    top_tokens: list[SurprisingToken] = field(default_factory=list)
    words: list[DrivingWord] = field(default_factory=list)
    sequence: list[tuple[str, float | None]] | None = None
    phrases: list[str] = field(default_factory=list)

    @property
    def n_tokens(self) -> int | None:
        """How many tokens the language model scored (``exp(lm_log_n_tokens)``), when known."""
        log_n = self.features.get("lm_log_n_tokens")
        return round(math.exp(log_n)) if log_n is not None and log_n < 30 else None

    @property
    def has_token_evidence(self) -> bool:
        return bool(self.top_tokens or self.sequence or self.words)

    @property
    def is_empty(self) -> bool:
        return not (self.not_scored or self.caveats or self.contributions or self.has_token_evidence or self.phrases)


def explain(evidence: Any) -> Explanation:
    """Read a detector's evidence (a dict or its JSON text) into an :class:`Explanation`."""
    evidence = _mapping(evidence)
    scored = evidence.get("scored")
    reason = evidence.get("not_scored_reason")
    flags = evidence.get("flags")
    surprisal = token_surprisal(evidence)
    return Explanation(
        scored=scored if isinstance(scored, bool) else None,
        not_scored=(NOT_SCORED.get(str(reason)) or f"not scored: {reason}") if reason else None,
        caveats=[
            CAVEATS.get(str(f)) or f"Caveat: {str(f).replace('_', ' ')}."
            for f in (flags if isinstance(flags, list) else [])
        ]
        + _language_model_note(evidence.get("language_model")),
        probability=_finite(evidence.get("probability")),
        features=_numbers(evidence.get("features")),
        contributions=contributions(evidence),
        top_tokens=top_tokens(evidence),
        words=top_words(evidence),
        sequence=surprisal[1] if surprisal and surprisal[0] == "sequence" else None,
        phrases=matched_phrases(evidence),
    )


def _language_model_note(stage: Any) -> list[str]:
    """Whether the second stage's language model read the post, and at what fast score, in words."""
    if not isinstance(stage, Mapping) or not isinstance(stage.get("ran"), bool):
        return []
    fast = _finite(stage.get("fast_head_probability"))
    at = f" (fast first stage: {fast:.1%})" if fast is not None else ""
    if stage["ran"]:
        return [f"The language model (SmolLM2) read this post{at}: its statistics are among the contributions."]
    return [
        f"The language model did not read this post{at}: no statistics could have lifted it to the threshold, "
        "so only the fast stage decided."
    ]


def contributions(evidence: Any) -> list[Contribution]:
    """Each feature's share of the log-odds, the largest pull (either way) first; [] when none."""
    evidence = _mapping(evidence)
    shares = _numbers(evidence.get("contributions"))
    values = _numbers(evidence.get("features"))
    ranked = sorted(shares.items(), key=lambda item: (-abs(item[1]), item[0]))
    return [Contribution(name, feature_name(name), share, values.get(name)) for name, share in ranked]


def top_tokens(evidence: Any) -> list[SurprisingToken]:
    """The most surprising tokens, most surprising first: ``top_surprisal_tokens`` or an older top-k ``tokens``."""
    evidence = _mapping(evidence)
    listed = evidence.get("top_surprisal_tokens")
    if not isinstance(listed, list) or not listed:
        listed = evidence.get("tokens")
    if not isinstance(listed, list) or not listed or not all(isinstance(t, Mapping) for t in listed):
        return []
    tokens = [
        SurprisingToken(str(t.get("token", "")), _position(t.get("position")), _finite(t.get("surprisal")))
        for t in listed
    ]
    return sorted(tokens, key=lambda t: (t.surprisal is None, -(t.surprisal or 0.0)))


def top_words(evidence: Any) -> list[DrivingWord]:
    """The words that added most log-odds towards machine-written (``top_words``), largest first."""
    listed = _mapping(evidence).get("top_words")
    if not isinstance(listed, list) or not all(isinstance(w, Mapping) for w in listed):
        return []
    words = [
        DrivingWord(str(w.get("word", "")), _position(w.get("position")), _finite(w.get("log_odds"))) for w in listed
    ]
    return sorted(words, key=lambda w: (w.log_odds is None, -(w.log_odds or 0.0)))


def token_surprisal(evidence: Any) -> tuple[str, list[tuple[str, float | None]]] | None:
    """Per-token surprisal from a detector's evidence, if it has any.

    Returns ``("sequence", pairs)`` when ``tokens`` and ``surprisal`` are parallel lists covering
    the post (they can be highlighted in place), ``("top", pairs)`` for a top-k list
    (``top_surprisal_tokens``, or ``tokens`` as ``{"token", "surprisal"}`` objects), in post order,
    or None. Non-finite or missing values become None; malformed evidence is None, never an error.
    """
    evidence = _mapping(evidence)
    tokens = evidence.get("tokens")
    if isinstance(tokens, list) and tokens and not any(isinstance(t, Mapping) for t in tokens):
        surprisal = evidence.get("surprisal")
        if isinstance(surprisal, list) and len(surprisal) == len(tokens):
            return "sequence", [(str(t), _finite(s)) for t, s in zip(tokens, surprisal, strict=True)]
    top = top_tokens(evidence)
    if not top:
        return None
    ordered = sorted(top, key=lambda t: (t.position is None, t.position or 0))
    return "top", [(t.token, t.surprisal) for t in ordered]


def matched_phrases(evidence: Any) -> list[str]:
    """The phrases a detector matched in the post (``phrases``), as written in the evidence."""
    phrases = _mapping(evidence).get("phrases")
    return [p for p in phrases if isinstance(p, str) and p.strip()] if isinstance(phrases, list) else []


def locate_tokens(
    text: str, tokens: Sequence[SurprisingToken], n_tokens: int | None = None
) -> list[tuple[int, int, SurprisingToken]]:
    """Where in ``text`` each token is, as non-overlapping ``(start, end, token)`` spans in text order.

    The detector's positions count the language model's tokens of the *prepared* text (links and
    mentions replaced), so they are not character offsets: a token is looked for as written (then
    ignoring case), and of several occurrences the one nearest ``position / n_tokens`` of the way
    through the text is taken (the first when the length is unknown). Tokens not found in the post
    (placeholders, whitespace) are left out; the view still lists them.
    """
    spans: list[tuple[int, int, SurprisingToken]] = []
    for token in sorted(tokens, key=lambda t: (t.position is None, t.position or 0)):
        needle = token.token.strip()
        if not needle:
            continue
        starts = [m.start() for m in re.finditer(re.escape(needle), text)] or [
            m.start() for m in re.finditer(re.escape(needle), text, re.IGNORECASE)
        ]
        free = [s for s in starts if not any(s < end and start < s + len(needle) for start, end, _ in spans)]
        if not free:
            continue
        if n_tokens and token.position is not None:
            expected = (token.position + 0.5) / n_tokens * len(text)
            start = min(free, key=lambda s: abs(s - expected))
        else:
            start = free[0]
        spans.append((start, start + len(needle), token))
    return sorted(spans, key=lambda span: span[0])


@dataclass(frozen=True)
class AgainstThreshold:
    """A detector's score against the threshold it was judged by.

    ``log_odds`` is True when the score is the log-odds of the probability (the AI-text detector's
    calibrated score): then ``probability_at_threshold`` is the probability the threshold stands for.
    """

    score: float
    threshold: float | None
    probability: float | None
    log_odds: bool
    probability_at_threshold: float | None

    @property
    def margin(self) -> float | None:
        """How far the score is over (positive) or under the threshold, on the score's own scale."""
        return None if self.threshold is None else self.score - self.threshold

    @property
    def crossed(self) -> bool | None:
        return None if self.threshold is None else self.score >= self.threshold


def against_threshold(score: Any, probability: Any, threshold: Any) -> AgainstThreshold | None:
    """``score`` and ``probability`` against ``threshold``; None when there is no finite score.

    The scale is recognised from the numbers, not from the detector's name: when the probability
    is the sigmoid of the score, the score is log-odds and the threshold's probability is its sigmoid.
    """
    score_f, probability_f, threshold_f = _finite(score), _finite(probability), _finite(threshold)
    if score_f is None:
        return None
    log_odds = probability_f is not None and abs(_sigmoid(score_f) - probability_f) < 1e-3
    at_threshold = _sigmoid(threshold_f) if log_odds and threshold_f is not None else None
    return AgainstThreshold(score_f, threshold_f, probability_f, log_odds, at_threshold)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _mapping(evidence: Any) -> Mapping[str, Any]:
    return evidence if isinstance(evidence, Mapping) else json_object(evidence)


def _numbers(value: Any) -> dict[str, float]:
    """A JSON object of numbers as ``{str: float}``, non-finite and non-numeric entries left out."""
    if not isinstance(value, Mapping):
        return {}
    out = {str(k): _finite(v) for k, v in value.items() if not isinstance(v, bool)}
    return {k: v for k, v in out.items() if v is not None}


def _position(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
