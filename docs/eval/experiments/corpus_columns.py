"""The corpus columns every head experiment here reads, loaded in one place.

Each script refits the shipped pipeline on ``chorus aitext-corpus``'s pieces and needs the same
arrays: texts, labels, splits, sources, the stylometric features and the register of every piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class CorpusColumns:
    corpus: pl.DataFrame
    texts: list[str]
    y: np.ndarray  # 1 = machine
    split: np.ndarray  # train / calibrate / evaluate
    source: np.ndarray
    style: np.ndarray  # [pieces, 12] stylometric features
    strata: np.ndarray  # "tweet" or "text": the register the classes are balanced in

    @property
    def evaluate(self) -> np.ndarray:
        return self.split == "evaluate"


def load_columns(path: str) -> CorpusColumns:
    """Read the corpus at ``path`` and compute its stylometry and registers (~1 minute on 2 cores)."""
    from detectors.aitext.fit_modern import register_of
    from detectors.aitext.text import stylometric_features

    corpus = pl.read_parquet(path)
    texts = corpus["text"].to_list()
    source = corpus["source"].to_numpy()
    return CorpusColumns(
        corpus=corpus,
        texts=texts,
        y=corpus["label"].to_numpy().astype(int),
        split=corpus["split"].to_numpy(),
        source=source,
        style=np.stack([stylometric_features(t) for t in texts]),
        strata=register_of(source),
    )
