"""Per-post features for the AI-text head: SmolLM2 statistics, MiniLM embeddings, stylometry.

The expensive part is the language model, so it is run the way short posts want it:

* posts are tokenised once, prefixed with SmolLM2's document-start token (so the first word is
  scored) and truncated at :data:`MAX_LM_TOKENS` tokens — long posts are flagged ``truncated``;
* posts are sorted by length and cut into micro-batches of at most :data:`LM_TOKEN_BUDGET` padded
  tokens, so a batch of tweets is not padded to the length of one long post;
* each micro-batch gets one forward pass, and every statistic comes from those logits
  (:mod:`detectors.aitext.metrics`).

The language model is called through a :class:`LogitsBackend` and the sentence encoder through a
:class:`HiddenStatesBackend` — torch (:class:`TorchCausalLM`, :class:`TorchEncoder`) or ONNX Runtime
(:mod:`detectors.aitext.onnx_backend`) — so both runtimes share the batching, the padding masks and
the maths, and differ only in who multiplies the matrices.

Everything here works on tokenizers and models handed in; loading them from the installed weight
packages (and the ONNX export cache) is :mod:`stream.models.aitext`'s ``FeatureExtractor.load``.

Embeddings are computed once per post and returned in :class:`FeatureBatch` so the campaign
detector can reuse them instead of running MiniLM again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from detectors.aitext.metrics import LM_FEATURE_NAMES
from detectors.aitext.text import STYLE_FEATURE_NAMES, TriagedPost, stylometric_features, triage

#: Tokens of a post the language model reads, document-start token included. Tweets are ~30
#: SmolLM2 tokens (the longest TweepFake posts ~90); 128 covers every tweet-length post while
#: bounding the cost of a pasted article. Longer posts are scored on their first 127 tokens.
MAX_LM_TOKENS = 128
#: Padded tokens per LM micro-batch. The logits alone are tokens x 49,152 x 4 bytes (~400 MB at
#: 2048), and the statistics need a few such tensors, so this bounds memory at ~2 GB on CPU.
LM_TOKEN_BUDGET = 2048
#: Tokens the sentence encoder reads (its own limit is 256; posts are short).
MAX_ENCODER_TOKENS = 128
ENCODER_TOKEN_BUDGET = 8192
#: Scored tokens whose full-vocabulary statistics (log-softmax, rank, entropy, second moment) are
#: computed at once, by where the logits are. On CPU a chunk's temporaries (16 x 49,152 floats,
#: 3 MB each) stay in cache instead of being freshly mapped 200 MB arrays: measured on the 2-core
#: machine, 1.64 ms of CPU per token at 1024 -> 0.48 ms at 16 (0.44 at 8), the same values. A GPU
#: wants large chunks (few kernel launches).
STATS_CHUNK_TOKENS = {"cpu": 16, "cuda": 1024}
EMBEDDING_DIM = 384

#: The fine-tuned encoder's classifier logit (:mod:`detectors.aitext.finetune`); NaN when the
#: extractor runs the frozen encoder alone (as training does, before the adapter exists).
ADAPTER_FEATURE_NAMES: tuple[str, ...] = ("enc_adapter_logit",)
#: Features that do not depend on a learnt adapter (what the training feature cache stores).
BASE_FEATURE_NAMES: tuple[str, ...] = LM_FEATURE_NAMES + STYLE_FEATURE_NAMES
FEATURE_NAMES: tuple[str, ...] = BASE_FEATURE_NAMES + ADAPTER_FEATURE_NAMES
#: Runtimes for the two models: transformers, or ONNX Runtime over cached exports.
BACKENDS: tuple[str, ...] = ("torch", "onnx")


class LogitsBackend(Protocol):
    """Something that turns a padded batch of token ids into next-token logits."""

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any: ...


class HiddenStatesBackend(Protocol):
    """Something that turns a padded batch of token ids into the encoder's last hidden states.

    An encoder with the fine-tuned adapter returns ``(last_hidden_state, adapter_logit)`` instead:
    the frozen states (for the embedding) and the classifier logit, from one call.
    """

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any: ...


def length_batches(lengths: Sequence[int], token_budget: int, max_batch: int = 256) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size stays within the budget.

    Sorting by length first is what keeps padding small; a post longer than the budget still gets
    a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(lengths[i], 1)  # sorted, so the newcomer is the longest
        if current and (longest * (len(current) + 1) > token_budget or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists into ``(input_ids, attention_mask)`` int64 arrays."""
    width = max((len(s) for s in sequences), default=0)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


@dataclass
class LmResult:
    """Language-model statistics for a list of texts, row-aligned with it."""

    features: np.ndarray  # [n, len(LM_FEATURE_NAMES)], NaN where nothing was scored
    token_ids: list[np.ndarray]  # scored target tokens per post (document-start token excluded)
    surprisal: list[np.ndarray]  # -log p per scored token, nats
    truncated: np.ndarray  # bool [n]


class LanguageModelScorer:
    """SmolLM2 statistics for texts, with length batching and truncation in one place."""

    def __init__(
        self,
        tokenizer: Any,
        forward: LogitsBackend,
        max_tokens: int = MAX_LM_TOKENS,
        token_budget: int = LM_TOKEN_BUDGET,
        document_start_id: int | None = 0,
        max_batch: int = 256,
        chunk_tokens: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.forward = forward
        self.max_tokens = max_tokens
        self.token_budget = token_budget
        self.max_batch = max_batch
        self.chunk_tokens = chunk_tokens
        self.document_start_id = document_start_id
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids per text, document-start token first, truncated; and which were truncated."""
        prefix = [] if self.document_start_id is None else [self.document_start_id]
        limit = self.max_tokens - len(prefix)
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        truncated = np.array([len(ids) > limit for ids in encoded], dtype=bool)
        return [prefix + list(ids[:limit]) for ids in encoded], truncated

    def score(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> LmResult:
        import torch

        from detectors.aitext.metrics import post_statistics

        sequences, truncated = self.tokenize(texts)
        n = len(sequences)
        features = np.full((n, len(LM_FEATURE_NAMES)), np.nan)
        token_ids: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n
        surprisals: list[np.ndarray] = [np.zeros(0)] * n
        for batch in length_batches([len(s) for s in sequences], self.token_budget, self.max_batch):
            ids, mask = pad_batch([sequences[i] for i in batch], self.pad_id)
            with torch.inference_mode():
                logits = torch.as_tensor(self.forward(ids, mask))
                chunk = self.chunk_tokens or STATS_CHUNK_TOKENS.get(logits.device.type, STATS_CHUNK_TOKENS["cuda"])
                feats, surprisal = post_statistics(
                    logits,
                    torch.from_numpy(ids).to(logits.device),
                    torch.from_numpy(mask).to(logits.device),
                    chunk,
                )
            feats_np = feats.double().cpu().numpy()
            surprisal_np = surprisal.double().cpu().numpy()
            for row, i in enumerate(batch):
                features[i] = feats_np[row]
                scored = int(mask[row].sum()) - 1
                token_ids[i] = ids[row, 1 : 1 + scored].copy()
                surprisals[i] = surprisal_np[row, :scored].copy()
            if progress is not None:
                progress(len(batch))
        return LmResult(features=features, token_ids=token_ids, surprisal=surprisals, truncated=truncated)


class TorchCausalLM:
    """:class:`LogitsBackend` over a transformers causal LM (float32 on CPU, bf16 on CUDA)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = next(model.parameters()).device

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        import torch

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(input_ids).to(self.device),
                attention_mask=torch.from_numpy(attention_mask).to(self.device),
            )
        # Statistics are computed where the logits are, in float32 chunks (metrics.token_statistics):
        # copying [b, s, 49152] to the host, or to float32 at once, would cost more than the forward.
        return out.logits


class TorchEncoder:
    """:class:`HiddenStatesBackend` over a transformers encoder (hidden states stay on its device).

    ``model`` is a transformers encoder, or :func:`detectors.aitext.finetune.adapted_encoder`'s
    module, which returns ``(last_hidden_state, adapter_logit)``; either is passed through.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = next(model.parameters()).device

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        import torch

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(input_ids).to(self.device),
                attention_mask=torch.from_numpy(attention_mask).to(self.device),
            )
        return out if isinstance(out, tuple) else out.last_hidden_state


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling over real tokens, then L2 normalisation.

    Pass a torch ``model`` (wrapped in :class:`TorchEncoder`) or any ``forward`` backend (ONNX); the
    pooling over the padding mask is done here, once, for both.
    """

    def __init__(
        self,
        tokenizer: Any,
        model: Any = None,
        max_tokens: int = MAX_ENCODER_TOKENS,
        token_budget: int = ENCODER_TOKEN_BUDGET,
        max_batch: int = 256,
        forward: HiddenStatesBackend | None = None,
    ) -> None:
        if model is None and forward is None:
            raise ValueError("SentenceEncoder needs a torch model or a forward backend")
        self.tokenizer = tokenizer
        self.model = model
        self.forward: HiddenStatesBackend = forward if forward is not None else TorchEncoder(model)
        self.max_tokens = max_tokens
        self.token_budget = token_budget
        self.max_batch = max_batch

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised mean-pooled embeddings ``[n, EMBEDDING_DIM]``."""
        return self.encode_with_logit(texts)[0]

    def encode_with_logit(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and the adapter's classifier logit per text (NaN without an adapter), one call per batch."""
        import torch

        out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        logits = np.full(len(texts), np.nan)
        if not texts:
            return out, logits
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        for batch in length_batches([len(e) for e in encoded], self.token_budget, self.max_batch):
            ids, mask = pad_batch([encoded[i] for i in batch], self.tokenizer.pad_token_id or 0)
            with torch.inference_mode():
                result = self.forward(ids, mask)
                if isinstance(result, tuple | list):
                    result, logit = result
                    logits[batch] = torch.as_tensor(logit).double().cpu().numpy()
                hidden = torch.as_tensor(result).float()
                mask_t = torch.from_numpy(mask).to(hidden.device)
            pooled = (hidden * mask_t.unsqueeze(-1)).sum(1) / mask_t.sum(1, keepdim=True).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[batch] = pooled.cpu().numpy()
        return out, logits


@dataclass
class FeatureBatch:
    """Everything the head and the evidence need about a batch of posts, row-aligned."""

    triaged: list[TriagedPost]
    values: np.ndarray  # [n, len(FEATURE_NAMES)] float64; NaN rows for posts not scored
    embedding: np.ndarray  # [n, EMBEDDING_DIM] float32; NaN rows for posts not scored
    token_ids: list[np.ndarray] = field(default_factory=list)
    surprisal: list[np.ndarray] = field(default_factory=list)
    names: tuple[str, ...] = FEATURE_NAMES

    @property
    def scored(self) -> np.ndarray:
        return np.array([t.scored for t in self.triaged], dtype=bool)

    def __len__(self) -> int:
        return len(self.triaged)


class FeatureExtractor:
    """Triage, normalise and featurise posts: the one entry point training and scoring share."""

    def __init__(
        self,
        lm: LanguageModelScorer | None,
        encoder: SentenceEncoder | None,
        normalise: bool = True,
        strip_markers: bool = False,
    ) -> None:
        self.lm = lm
        self.encoder = encoder
        self.normalise = normalise
        #: Remove hashtags, emoji, links and mentions before the models see a post: what the modern
        #: head was trained on (:func:`detectors.aitext.corpus.strip_markers`).
        self.strip_markers = strip_markers

    def extract(
        self,
        texts: Sequence[Any],
        langs: Sequence[str | None] | None = None,
        progress: Callable[[int], None] | None = None,
        language_model: bool = True,
    ) -> FeatureBatch:
        """Features of every post; ``language_model=False`` leaves the SmolLM2 columns NaN (a second
        stage then runs it on the posts that need it, :meth:`add_language_model`)."""
        langs = list(langs) if langs is not None else [None] * len(texts)
        triaged = [
            triage(t, lang, normalise=self.normalise, strip_markers=self.strip_markers)
            for t, lang in zip(texts, langs, strict=True)
        ]
        n = len(triaged)
        values = np.full((n, len(FEATURE_NAMES)), np.nan)
        embedding = np.full((n, EMBEDDING_DIM), np.nan, dtype=np.float32)
        token_ids: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n
        surprisal: list[np.ndarray] = [np.zeros(0)] * n
        rows = [i for i, t in enumerate(triaged) if t.scored]
        texts_ok = [triaged[i].text for i in rows]
        k_lm = len(LM_FEATURE_NAMES)
        if rows and self.lm is not None and language_model:
            result = self.lm.score(texts_ok, progress=progress)
            values[rows, :k_lm] = result.features
            for j, i in enumerate(rows):
                token_ids[i] = result.token_ids[j]
                surprisal[i] = result.surprisal[j]
                if result.truncated[j]:
                    triaged[i] = TriagedPost(triaged[i].text, None, (*triaged[i].flags, "truncated_tokens"))
        k_base = len(BASE_FEATURE_NAMES)
        for i in rows:
            values[i, k_lm:k_base] = stylometric_features(triaged[i].text)
        if rows and self.encoder is not None:
            embedding[rows], values[rows, k_base] = self.encoder.encode_with_logit(texts_ok)
        return FeatureBatch(triaged, values, embedding, token_ids, surprisal)

    def add_language_model(self, batch: FeatureBatch, rows: Sequence[int]) -> None:
        """Fill the SmolLM2 columns, token ids and surprisal of ``rows`` (scored posts) in place."""
        rows = [i for i in rows if batch.triaged[i].scored]
        if not rows or self.lm is None:
            return
        result = self.lm.score([batch.triaged[i].text for i in rows])
        batch.values[rows, : len(LM_FEATURE_NAMES)] = result.features
        for j, i in enumerate(rows):
            batch.token_ids[i] = result.token_ids[j]
            batch.surprisal[i] = result.surprisal[j]
            if result.truncated[j]:
                t = batch.triaged[i]
                batch.triaged[i] = TriagedPost(t.text, None, (*t.flags, "truncated_tokens"))


def top_surprisal_tokens(
    tokenizer: Any, token_ids: np.ndarray, surprisal: np.ndarray, k: int = 5
) -> list[dict[str, Any]]:
    """The ``k`` most surprising tokens of a post, as ``{"token", "position", "surprisal"}``."""
    if len(surprisal) == 0:
        return []
    top = np.argsort(-surprisal, kind="stable")[:k]
    return [
        {
            "token": tokenizer.decode([int(token_ids[p])]),
            "position": int(p),
            "surprisal": round(float(surprisal[p]), 3) if math.isfinite(surprisal[p]) else None,
        }
        for p in top
    ]
