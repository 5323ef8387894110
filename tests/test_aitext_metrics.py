"""Metric maths of the AI-text detector on tensors small enough to check by hand."""

from __future__ import annotations

import math

import pytest
import torch

from detectors.aitext.metrics import (
    LM_FEATURE_NAMES,
    binoculars_ratio,
    fast_detectgpt_criterion,
    masked_mean,
    mean_entropy,
    mean_log_likelihood,
    mean_log_rank,
    post_statistics,
    shift_for_next_token,
    surprisal,
    token_statistics,
)

P = torch.tensor([0.5, 0.25, 0.25])
LOGITS_P = P.log()  # softmax(log p) = p exactly


def _col(name: str) -> int:
    return LM_FEATURE_NAMES.index(name)


def one_post(targets: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A post [0, *targets] where every position predicts with p = (0.5, 0.25, 0.25)."""
    ids = torch.tensor([[0, *targets]])
    logits = LOGITS_P.expand(1, ids.shape[1], 3).clone()
    return logits, ids, torch.ones_like(ids)


def test_hand_checked_statistics() -> None:
    logits, ids, mask = one_post([0, 1])  # targets: token 0 (p=.5, rank 1), token 1 (p=.25, rank 2)
    stats = token_statistics(logits, ids, mask)
    assert mean_log_likelihood(stats).item() == pytest.approx((math.log(0.5) + math.log(0.25)) / 2)
    assert mean_log_rank(stats).item() == pytest.approx((math.log(1) + math.log(2)) / 2)
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert mean_entropy(stats).item() == pytest.approx(h)
    # Fast-DetectGPT: (sum log p(x) - sum E[log p]) / sqrt(sum Var[log p]) over 2 tokens
    second = 0.5 * math.log(0.5) ** 2 + 0.5 * math.log(0.25) ** 2
    var = second - h**2
    expected = (math.log(0.5) + math.log(0.25) - 2 * (-h)) / math.sqrt(2 * var)
    assert fast_detectgpt_criterion(stats).item() == pytest.approx(expected, rel=1e-5)
    # single-model Binoculars: log-ppl / cross-ppl, cross-ppl = entropy when observer = performer
    assert binoculars_ratio(stats).item() == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2 / h, rel=1e-6)
    assert surprisal(stats)[0].tolist() == pytest.approx([-math.log(0.5), -math.log(0.25)])


def test_ties_rank_first_and_zero_variance_is_nan() -> None:
    ids = torch.tensor([[0, 2, 1]])
    logits = torch.zeros(1, 3, 3)  # uniform: every token ties for first
    stats = token_statistics(logits, ids, torch.ones_like(ids))
    assert mean_log_rank(stats).item() == pytest.approx(0.0)
    assert mean_entropy(stats).item() == pytest.approx(math.log(3))
    assert math.isnan(fast_detectgpt_criterion(stats).item())  # no variance to normalise by


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_changes_nothing(side: str) -> None:
    logits, ids, mask = one_post([0, 1, 2])
    base, base_s = post_statistics(logits, ids, mask)
    junk = torch.randn(1, 2, 3) * 50  # padded positions carry arbitrary logits
    pad_ids = torch.full((1, 2), 7 % 3)
    if side == "right":
        p_logits, p_ids = torch.cat([logits, junk], 1), torch.cat([ids, pad_ids], 1)
        p_mask = torch.cat([mask, torch.zeros(1, 2, dtype=mask.dtype)], 1)
    else:
        p_logits, p_ids = torch.cat([junk, logits], 1), torch.cat([pad_ids, ids], 1)
        p_mask = torch.cat([torch.zeros(1, 2, dtype=mask.dtype), mask], 1)
    padded, padded_s = post_statistics(p_logits, p_ids, p_mask)
    torch.testing.assert_close(padded, base)
    real = padded_s[~padded_s.isnan()]
    torch.testing.assert_close(real, base_s[0])


def test_batch_rows_are_independent_of_each_other() -> None:
    a_logits, a_ids, a_mask = one_post([0, 1, 2, 1])
    b_logits, b_ids, b_mask = one_post([2])
    b_logits = torch.cat([b_logits, torch.zeros(1, 3, 3)], 1)
    b_ids = torch.cat([b_ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    b_mask = torch.cat([b_mask, torch.zeros(1, 3, dtype=torch.long)], 1)
    both, _ = post_statistics(torch.cat([a_logits, b_logits]), torch.cat([a_ids, b_ids]), torch.cat([a_mask, b_mask]))
    alone_a, _ = post_statistics(a_logits, a_ids, a_mask)
    alone_b, _ = post_statistics(*one_post([2]))
    torch.testing.assert_close(both[0], alone_a[0])
    torch.testing.assert_close(both[1], alone_b[0], equal_nan=True)


def test_single_token_post() -> None:
    # with a document-start token before it, the one real token is scored
    feats, s = post_statistics(*one_post([1]))
    assert feats[0, _col("lm_mean_loglik")].item() == pytest.approx(math.log(0.25))
    assert feats[0, _col("lm_log_n_tokens")].item() == pytest.approx(0.0)
    assert s.shape == (1, 1)
    # without one there is nothing to score: NaN, never a made-up 0
    logits, ids, mask = LOGITS_P.view(1, 1, 3), torch.tensor([[1]]), torch.tensor([[1]])
    feats, s = post_statistics(logits, ids, mask)
    assert torch.isnan(feats).all()
    assert s.shape == (1, 0)


def test_empty_batch_and_all_padding_row() -> None:
    feats, s = post_statistics(torch.zeros(0, 4, 3), torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4))
    assert feats.shape == (0, len(LM_FEATURE_NAMES))
    assert s.shape == (0, 3)
    feats, _ = post_statistics(torch.zeros(1, 4, 3), torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4))
    assert torch.isnan(feats).all()


def test_masked_mean_and_shape_errors() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    out = masked_mean(values, mask)
    assert out[0].item() == pytest.approx(2.0)
    assert math.isnan(out[1].item())
    with pytest.raises(ValueError, match="expected logits"):
        shift_for_next_token(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3))
