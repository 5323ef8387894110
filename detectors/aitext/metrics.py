"""Zero-shot language-model statistics of a post, as pure functions over one forward pass.

Every function here takes the causal LM's ``logits`` ``[batch, seq, vocab]``, the ``input_ids``
``[batch, seq]`` they were computed from and the ``attention_mask`` ``[batch, seq]`` (1 = real
token, 0 = padding), and returns one value per post (or per token). Nothing loads a model, so the
maths can be checked by hand on tensors of a few elements (``tests/test_aitext_metrics.py``).

Padding is handled in exactly one place, :func:`shift_for_next_token`: position ``t`` of the logits
predicts token ``t + 1``, and a prediction counts only when both the context token and the target
are real. Everything downstream multiplies by that one mask. A post with no scored token (empty, or a
single token with no document-start token before it) gets NaN, never a silent 0 — the caller turns
NaN into a "not scored" result.

The statistics (all means are over the scored tokens of one post):

* **mean log-likelihood** ``mean_t log p(x_t | x_<t)`` — machine text is more probable.
* **mean log-rank** ``mean_t log rank(x_t)`` (rank 1 = the model's top choice; GLTR, DetectLLM).
* **mean entropy** ``mean_t H(p(. | x_<t))`` of the predictive distribution.
* **Fast-DetectGPT analytic criterion** (Bao et al., 2024) with the same model as sampler and scorer:
  ``(sum_t log p(x_t) - sum_t E_p[log p]) / sqrt(sum_t Var_p[log p])``. Machine text sits above the
  expected log-likelihood of the model's own samples, so higher means more machine-like.
* **Binoculars ratio** (Hans et al., 2024) with a single model: log-perplexity over cross-perplexity.
  With observer = performer the cross-perplexity ``mean_t sum_v p_v (-log p_v)`` *is* the mean
  entropy, so the ratio is ``(-mean log-likelihood) / mean entropy``; lower means more machine-like.
* **GLTR rank buckets**: the fraction of tokens that were the model's top-1, top-10, top-100 choice.
* **per-token surprisal** ``-log p(x_t)``, kept as evidence of which tokens made the call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Names of the per-post statistics returned by :func:`post_statistics`, in column order.
LM_FEATURE_NAMES: tuple[str, ...] = (
    "lm_mean_loglik",
    "lm_mean_logrank",
    "lm_mean_entropy",
    "lm_fast_detectgpt",
    "lm_binoculars",
    "lm_surprisal_std",
    "lm_surprisal_max",
    "lm_top1_frac",
    "lm_top10_frac",
    "lm_top100_frac",
    "lm_log_n_tokens",
)


@dataclass(frozen=True)
class ShiftedBatch:
    """Logits aligned with the tokens they predict, and the one mask of scored predictions."""

    logits: torch.Tensor  # [batch, seq - 1, vocab], dtype as given
    targets: torch.Tensor  # [batch, seq - 1]
    mask: torch.Tensor  # [batch, seq - 1], float 0/1: 1 where the prediction is scored


def shift_for_next_token(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ShiftedBatch:
    """Align ``logits[:, t]`` with ``input_ids[:, t + 1]``; the only place padding is handled.

    A prediction is scored when its context token and its target are both real tokens, which is
    right for left- or right-padding alike.
    """
    if logits.dim() != 3 or input_ids.shape != logits.shape[:2] or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"expected logits [b, s, v] with input_ids and attention_mask [b, s]; got "
            f"{tuple(logits.shape)}, {tuple(input_ids.shape)}, {tuple(attention_mask.shape)}"
        )
    mask = (attention_mask[:, :-1] * attention_mask[:, 1:]).to(torch.float32)
    return ShiftedBatch(logits=logits[:, :-1], targets=input_ids[:, 1:].long(), mask=mask)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis where ``mask`` is 1; NaN for a row with no scored position."""
    n = mask.sum(-1)
    total = (values * mask).sum(-1)
    return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, math.nan))


@dataclass(frozen=True)
class TokenStatistics:
    """Per-token quantities from one forward pass, all ``[batch, seq - 1]``, zero where masked."""

    log_prob: torch.Tensor  # log p(x_t | x_<t)
    rank: torch.Tensor  # 1 + number of vocabulary entries strictly more probable than x_t
    entropy: torch.Tensor  # H(p(. | x_<t)) = -E_p[log p]
    second_moment: torch.Tensor  # E_p[(log p)^2], for the Fast-DetectGPT variance
    mask: torch.Tensor


#: Scored tokens whose full-vocabulary statistics are computed at once. Each needs a few float32
#: rows of 49,152 entries (~1 MB), so 1024 bounds the temporaries at ~1 GB on CPU; GPUs use more.
DEFAULT_CHUNK_TOKENS = 1024


def token_statistics(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> TokenStatistics:
    """Everything per token that the per-post statistics need, from one log-softmax per token.

    Only scored positions are computed (padding costs nothing), ``chunk_tokens`` at a time, in
    float32 whatever the logits' dtype (bf16 on GPU), so memory stays bounded for any batch.
    """
    shifted = shift_for_next_token(logits, input_ids, attention_mask)
    batch, positions = shifted.mask.shape
    vocab = shifted.logits.shape[-1]
    flat_logits = shifted.logits.reshape(batch * positions, vocab)
    flat_targets = shifted.targets.reshape(-1)
    scored = (shifted.mask.reshape(-1) > 0).nonzero().squeeze(-1)
    device = shifted.logits.device
    out = {k: torch.zeros(batch * positions, device=device) for k in ("lp", "rank", "ent", "m2")}
    for start in range(0, scored.numel(), max(chunk_tokens, 1)):
        rows = scored[start : start + chunk_tokens]
        z = flat_logits[rows].float()
        target = flat_targets[rows].unsqueeze(-1)
        # clamp: a -inf logit (masked vocabulary) would make 0 * -inf = NaN below; e^-1e4 is 0 anyway
        log_p = torch.log_softmax(z, dim=-1).clamp(min=-1e4)
        p = log_p.exp()
        out["lp"][rows] = log_p.gather(-1, target).squeeze(-1)
        out["rank"][rows] = (z > z.gather(-1, target)).sum(-1).float() + 1.0
        out["ent"][rows] = -(p * log_p).sum(-1)
        out["m2"][rows] = (p * log_p.square()).sum(-1)
    shape = (batch, positions)
    return TokenStatistics(
        log_prob=out["lp"].reshape(shape),
        rank=out["rank"].reshape(shape),
        entropy=out["ent"].reshape(shape),
        second_moment=out["m2"].reshape(shape),
        mask=shifted.mask,
    )


def mean_log_likelihood(stats: TokenStatistics) -> torch.Tensor:
    """Mean log p(x_t | x_<t) per post (higher = more predictable = more machine-like)."""
    return masked_mean(stats.log_prob, stats.mask)


def mean_log_rank(stats: TokenStatistics) -> torch.Tensor:
    """Mean log rank per post (lower = the model's top choices = more machine-like)."""
    return masked_mean(torch.log(stats.rank.clamp(min=1.0)), stats.mask)


def mean_entropy(stats: TokenStatistics) -> torch.Tensor:
    """Mean predictive entropy per post."""
    return masked_mean(stats.entropy, stats.mask)


def fast_detectgpt_criterion(stats: TokenStatistics) -> torch.Tensor:
    """Fast-DetectGPT's analytic sampling discrepancy, same model as sampler and scorer.

    ``(sum log p(x_t) - sum E_p[log p]) / sqrt(sum Var_p[log p])`` over the scored tokens, where
    ``E_p[log p] = -H`` and ``Var_p[log p] = E_p[(log p)^2] - H^2``. NaN when nothing is scored or
    the model was certain at every position (zero variance).
    """
    m = stats.mask
    observed = stats.log_prob.sum(-1)
    expected = (-stats.entropy * m).sum(-1)
    variance = ((stats.second_moment - stats.entropy.square()).clamp(min=0.0) * m).sum(-1)
    ok = (m.sum(-1) > 0) & (variance > 0)
    return torch.where(
        ok, (observed - expected) / variance.clamp(min=1e-12).sqrt(), torch.full_like(observed, math.nan)
    )


def binoculars_ratio(stats: TokenStatistics) -> torch.Tensor:
    """Single-model Binoculars score: log-perplexity / cross-perplexity (= mean entropy here)."""
    log_ppl = -mean_log_likelihood(stats)
    x_ppl = mean_entropy(stats)
    return torch.where(x_ppl > 0, log_ppl / x_ppl.clamp(min=1e-12), torch.full_like(log_ppl, math.nan))


def surprisal(stats: TokenStatistics) -> torch.Tensor:
    """Per-token surprisal ``-log p(x_t)`` in nats, NaN at unscored positions (padding)."""
    return torch.where(stats.mask > 0, -stats.log_prob, torch.full_like(stats.log_prob, math.nan))


def _masked_std(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(values, mask)
    centred = (values - torch.nan_to_num(mean).unsqueeze(-1)) * mask
    return torch.sqrt(masked_mean(centred.square(), mask))


def post_statistics(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All per-post LM features (columns of :data:`LM_FEATURE_NAMES`) and per-token surprisal.

    Returns ``(features [batch, len(LM_FEATURE_NAMES)], surprisal [batch, seq - 1])``. An empty batch
    gives ``[0, k]`` and ``[0, max(seq - 1, 0)]`` tensors.
    """
    if logits.shape[0] == 0:
        return (
            torch.zeros(0, len(LM_FEATURE_NAMES)),
            torch.zeros(0, max(logits.shape[1] - 1, 0)),
        )
    stats = token_statistics(logits, input_ids, attention_mask, chunk_tokens)
    s = surprisal(stats)
    m = stats.mask
    n = m.sum(-1)
    masked_s = torch.where(m > 0, s, torch.full_like(s, -math.inf))
    if s.shape[-1] == 0:  # every post a single token with no context: nothing scored
        max_s = torch.full_like(n, math.nan)
    else:
        max_s = torch.where(n > 0, masked_s.max(-1).values, torch.full_like(n, math.nan))
    columns = [
        mean_log_likelihood(stats),
        mean_log_rank(stats),
        mean_entropy(stats),
        fast_detectgpt_criterion(stats),
        binoculars_ratio(stats),
        _masked_std(-stats.log_prob, m),
        max_s,
        masked_mean((stats.rank <= 1).float(), m),
        masked_mean((stats.rank <= 10).float(), m),
        masked_mean((stats.rank <= 100).float(), m),
        torch.where(n > 0, torch.log(n.clamp(min=1)), torch.full_like(n, math.nan)),
    ]
    return torch.stack(columns, dim=-1), s
