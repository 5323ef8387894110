"""The hand-applied character n-gram regression equals scikit-learn's on the same texts."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.aitext.char_ngrams import CharNgramModel, analyse, fit_char_ngrams

sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")

TEXTS = [
    "honestly the bus is late AGAIN, third time this week",
    "Navigating the complexities of modern transit can be challenging, but every step forward counts.",
    "lol ok   so the tram\tis packed",
    "Embracing change in our community fosters resilience and growth.",
    "ugh my laptop update took forever today",
    "It's important to remember that patience is key when commuting.",
    "a",
    "Ça va? Très bien, merci — et toi?",
] * 3
LABELS = np.array([0, 1, 0, 1, 0, 1, 0, 0] * 3)


def test_analyse_is_scikit_learns_char_wb() -> None:
    vectoriser = sklearn_text.TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4))
    build = vectoriser.build_analyzer()
    for text in TEXTS:
        assert analyse(text, (1, 4)) == build(text)


def test_logit_equals_scikit_learn_and_survives_a_round_trip() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    model = fit_char_ngrams(TEXTS, LABELS, min_df=1, max_features=500)
    vectoriser = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=1, max_features=500, sublinear_tf=True)
    x = vectoriser.fit_transform(TEXTS)
    reference = LogisticRegression(C=4.0, max_iter=1000, class_weight="balanced", random_state=0).fit(x, LABELS)
    unseen = ["the train was late", "Fostering meaningful connections is essential.", "zzzz qqqq"]
    expected = reference.decision_function(vectoriser.transform(unseen))
    assert model.logit(unseen) == pytest.approx(expected, abs=1e-9)
    again = CharNgramModel.from_dict(model.to_dict())
    assert again.logit(unseen) == pytest.approx(expected, abs=1e-4)  # stored to 6 significant digits
