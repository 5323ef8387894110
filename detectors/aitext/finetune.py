"""A small LoRA adapter that fine-tunes MiniLM's top layers into a machine-text classifier.

The frozen MiniLM embedding (mean-pooled, L2-normalised) is a poor authorship feature: it encodes
what a post is *about*. Fine-tuning the encoder as a classifier lets it learn *how* a post is
written. To keep the learnt artifact small and the frozen embedding intact (the campaign detector's
paraphrase network needs it), only the top :data:`DEFAULT_ADAPTED_LAYERS` transformer layers are
adapted, by low-rank updates ``W + (alpha / r) * B @ A`` to every linear map in them (query, key,
value, attention output, FFN in and out), plus a linear classifier over the mean-pooled output.

One encoder call per micro-batch gives both outputs (:class:`AdaptedEncoder`): the shared trunk
(embeddings and the bottom layers) runs once, then the frozen top layers give the embedding and
their adapted copies give the classifier logit. The cost is ``(6 + k) / 6`` of the frozen encoder
(k = 2: 1.33x; MiniLM is ~10% of a post's cost next to SmolLM2).

Training (:func:`fit_adapter`) runs the trunk once per post and caches its hidden states, so each
epoch runs only the adapted layers forward and backward: a few minutes on one CPU core.

Everything random takes a seed; the adapter is saved as a ``.safetensors`` file of float32 arrays
with its hyper-parameters in the metadata (a few hundred kB).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Transformer layers (from the top) that get a LoRA copy; the bottom ones are the shared trunk.
DEFAULT_ADAPTED_LAYERS = 2
#: Linear maps of a BERT layer that get a low-rank update, by their path inside the layer.
LORA_TARGETS: tuple[str, ...] = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
#: Tokens the adapter reads when training (posts are tweets: 99% fit); serving uses the encoder's own limit.
TRAIN_MAX_TOKENS = 64
#: The committed adapter, written by ``chorus train-aitext`` beside the head it feeds.
DEFAULT_ADAPTER = Path(__file__).resolve().parent / "artifacts" / "aitext_encoder_adapter.safetensors"


@dataclass(frozen=True)
class AdapterConfig:
    """Hyper-parameters of the adapter and of its training (all recorded in the artifact)."""

    adapted_layers: int = DEFAULT_ADAPTED_LAYERS
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    epochs: int = 3
    batch_size: int = 32
    max_tokens: int = TRAIN_MAX_TOKENS
    seed: int = 0


def _torch() -> Any:
    import torch

    return torch


def _lora_linear_class() -> type:
    torch = _torch()

    class LoRALinear(torch.nn.Module):
        """``base(x) + scale * dropout(x) @ A.T @ B.T`` with ``base`` frozen and ``B`` starting at zero."""

        def __init__(self, base: Any, rank: int, alpha: float, dropout: float) -> None:
            super().__init__()
            self.base = base
            for p in self.base.parameters():
                p.requires_grad_(False)
            self.lora_a = torch.nn.Parameter(torch.empty(rank, base.in_features))
            self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            torch.nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
            self.scale = alpha / rank
            self.dropout = torch.nn.Dropout(dropout)

        def forward(self, x: Any) -> Any:
            return self.base(x) + (self.dropout(x) @ self.lora_a.T @ self.lora_b.T) * self.scale

        def merged(self) -> Any:
            """A plain ``nn.Linear`` with the update folded in (for serving and ONNX export)."""
            out = torch.nn.Linear(self.base.in_features, self.base.out_features)
            with torch.no_grad():
                out.weight.copy_(self.base.weight + self.scale * self.lora_b @ self.lora_a)
                out.bias.copy_(self.base.bias)
            return out

    return LoRALinear


def _get(module: Any, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part)
    return module


def _set(module: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        module = getattr(module, part)
    setattr(module, last, value)


def _make_adapter_module(encoder: Any, config: AdapterConfig) -> Any:
    """(adapted copies of the top layers with LoRA linears, classifier) as one ``nn.Module``."""
    torch = _torch()
    lora_linear = _lora_linear_class()
    torch.manual_seed(config.seed)
    layers = torch.nn.ModuleList(copy.deepcopy(layer) for layer in encoder.encoder.layer[-config.adapted_layers :])
    for layer in layers:
        for p in layer.parameters():
            p.requires_grad_(False)
        for target in LORA_TARGETS:
            _set(layer, target, lora_linear(_get(layer, target), config.rank, config.alpha, config.dropout))
    module = torch.nn.Module()
    module.layers = layers
    module.classifier = torch.nn.Linear(encoder.config.hidden_size, 1)
    return module


def _attention_mask_4d(encoder: Any, hidden: Any, mask: Any) -> Any:
    """The attention mask the encoder's own layers expect, built the way ``BertModel`` builds it."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=mask)


def _mean_pool(hidden: Any, mask: Any) -> Any:
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def trunk_states(encoder: Any, input_ids: Any, attention_mask: Any, adapted_layers: int) -> tuple[Any, Any]:
    """Hidden states after the shared bottom layers, and the 4-D attention mask for the rest."""
    hidden = encoder.embeddings(input_ids=input_ids)
    mask4d = _attention_mask_4d(encoder, hidden, attention_mask)
    for layer in encoder.encoder.layer[: len(encoder.encoder.layer) - adapted_layers]:
        hidden = layer(hidden, mask4d)
    return hidden, mask4d


def _run_layers(layers: Sequence[Any], hidden: Any, mask4d: Any) -> Any:
    for layer in layers:
        hidden = layer(hidden, mask4d)
    return hidden


def _adapter_logit(module: Any, hidden: Any, mask: Any, mask4d: Any) -> Any:
    out = _run_layers(module.layers, hidden, mask4d)
    return module.classifier(_mean_pool(out, mask)).squeeze(-1)


# --- the learnt artifact ------------------------------------------------------------------------------


@dataclass
class EncoderAdapter:
    """Learnt LoRA factors and classifier; attributes ending in ``_`` were learnt from data."""

    config: AdapterConfig
    lora_: dict[str, np.ndarray]  # "<layer>.<target>.lora_a|lora_b" -> float32 array
    classifier_weight_: np.ndarray  # [hidden]
    classifier_bias_: float
    training: dict[str, Any]

    def to_tensors(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """The float32 arrays and the string metadata (hyper-parameters, training record) a
        ``.safetensors`` file holds."""
        tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.lora_.items()}
        tensors["classifier.weight"] = np.asarray(self.classifier_weight_, dtype=np.float32)
        tensors["classifier.bias"] = np.asarray([self.classifier_bias_], dtype=np.float32)
        metadata = {"config": json.dumps(asdict(self.config)), "training": json.dumps(self.training)}
        return tensors, metadata

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> EncoderAdapter:
        """The adapter :meth:`to_tensors` describes (what the serving side reads from the file)."""
        tensors = dict(tensors)
        weight = tensors.pop("classifier.weight")
        bias = float(tensors.pop("classifier.bias")[0])
        config = AdapterConfig(**json.loads(metadata["config"]))
        return cls(config, tensors, weight, bias, json.loads(metadata["training"]))

    @classmethod
    def from_module(cls, module: Any, config: AdapterConfig, training: dict[str, Any]) -> EncoderAdapter:
        lora = {}
        for i, layer in enumerate(module.layers):
            for target in LORA_TARGETS:
                lin = _get(layer, target)
                lora[f"{i}.{target}.lora_a"] = lin.lora_a.detach().cpu().numpy().copy()
                lora[f"{i}.{target}.lora_b"] = lin.lora_b.detach().cpu().numpy().copy()
        w = module.classifier.weight.detach().cpu().numpy()[0].copy()
        b = float(module.classifier.bias.detach().cpu().numpy()[0])
        return cls(config, lora, w, b, training)

    def build_module(self, encoder: Any, merge: bool = True) -> Any:
        """The adapted top layers and classifier for ``encoder``; LoRA folded into the weights if ``merge``."""
        torch = _torch()
        module = _make_adapter_module(encoder, self.config)
        with torch.no_grad():
            for i, layer in enumerate(module.layers):
                for target in LORA_TARGETS:
                    lin = _get(layer, target)
                    lin.lora_a.copy_(torch.from_numpy(self.lora_[f"{i}.{target}.lora_a"]))
                    lin.lora_b.copy_(torch.from_numpy(self.lora_[f"{i}.{target}.lora_b"]))
                    if merge:
                        _set(layer, target, lin.merged())
            module.classifier.weight.copy_(torch.from_numpy(self.classifier_weight_)[None])
            module.classifier.bias.fill_(self.classifier_bias_)
        device = next(encoder.parameters()).device
        dtype = next(encoder.parameters()).dtype
        return module.to(device=device, dtype=dtype).eval()


def adapted_encoder(encoder: Any, adapter: EncoderAdapter) -> Any:
    """``(input_ids, attention_mask) -> (last_hidden_state, adapter_logit)`` in one call.

    ``last_hidden_state`` is the frozen encoder's, exactly (the bottom layers are shared, the top
    ones are the original weights), so the sentence embedding does not change.
    """
    torch = _torch()
    head = adapter.build_module(encoder, merge=True)
    k = adapter.config.adapted_layers

    class AdaptedEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.adapter = head
            self.config = encoder.config

        def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
            hidden, mask4d = trunk_states(self.encoder, input_ids, attention_mask, k)
            frozen = _run_layers(self.encoder.encoder.layer[len(self.encoder.encoder.layer) - k :], hidden, mask4d)
            return frozen, _adapter_logit(self.adapter, hidden, attention_mask, mask4d)

    return AdaptedEncoder().eval()


# --- training -----------------------------------------------------------------------------------------


@dataclass
class TrunkCache:
    """Trunk hidden states per post (float16, unpadded), computed once, reused by every epoch and fold."""

    states: list[np.ndarray]  # [len_i, hidden]

    def __len__(self) -> int:
        return len(self.states)


def compute_trunk(
    tokenizer: Any,
    encoder: Any,
    texts: Sequence[str],
    adapted_layers: int,
    max_tokens: int = TRAIN_MAX_TOKENS,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> TrunkCache:
    torch = _torch()
    from detectors.aitext.features import length_batches, pad_batch

    encoded = tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]
    states: list[np.ndarray] = [np.zeros((0, 0), np.float16)] * len(encoded)
    for batch in length_batches([len(e) for e in encoded], batch_size * max_tokens, batch_size):
        ids, mask = pad_batch([encoded[i] for i in batch], tokenizer.pad_token_id or 0)
        with torch.inference_mode():
            hidden, _ = trunk_states(encoder, torch.from_numpy(ids), torch.from_numpy(mask), adapted_layers)
        h = hidden.float().numpy().astype(np.float16)
        for row, i in enumerate(batch):
            states[i] = h[row, : int(mask[row].sum())].copy()
        if progress is not None:
            progress(len(batch))
    return TrunkCache(states)


def _padded(cache: TrunkCache, idx: Sequence[int]) -> tuple[Any, Any]:
    torch = _torch()
    width = max(len(cache.states[i]) for i in idx)
    dim = cache.states[idx[0]].shape[1]
    h = np.zeros((len(idx), width, dim), np.float32)
    m = np.zeros((len(idx), width), np.int64)
    for r, i in enumerate(idx):
        s = cache.states[i]
        h[r, : len(s)] = s
        m[r, : len(s)] = 1
    return torch.from_numpy(h), torch.from_numpy(m)


def predict_cached(
    module: Any, encoder: Any, cache: TrunkCache, idx: Sequence[int], batch_size: int = 128
) -> np.ndarray:
    """Adapter logits for cached trunk states (eval mode, no gradient), row-aligned with ``idx``."""
    torch = _torch()
    idx = list(idx)
    out = np.zeros(len(idx))
    order = sorted(range(len(idx)), key=lambda j: len(cache.states[idx[j]]))
    module.eval()
    for start in range(0, len(order), batch_size):
        part = order[start : start + batch_size]
        h, m = _padded(cache, [idx[j] for j in part])
        with torch.inference_mode():
            logit = _adapter_logit(module, h, m, _attention_mask_4d(encoder, h, m))
        out[part] = logit.double().numpy()
    return out


def fit_adapter(
    encoder: Any,
    cache: TrunkCache,
    labels: np.ndarray,
    train_idx: Sequence[int],
    config: AdapterConfig,
    eval_idx: Sequence[int] | None = None,
    on_epoch: Callable[[int, Any], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """Train LoRA + classifier on cached trunk states (AdamW, linear warm-up then constant rate, BCE).

    ``on_epoch(epoch, module)`` is called after each epoch (the grouped CV scores every epoch count
    from one run this way). Returns the trained module (LoRA not merged).
    """
    torch = _torch()
    module = _make_adapter_module(encoder, config)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    train_idx = np.asarray(train_idx)
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    total = steps_per_epoch * config.epochs
    # constant after warm-up, so the model after epoch k of a longer run *is* the k-epoch model
    # (the grouped CV scores every epoch count from one run)
    warmup = max(1, min(total // 10, steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, 1.0))
    rng = np.random.default_rng(config.seed)
    y = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    for epoch in range(config.epochs):
        module.train()
        # length-bucketed shuffling: shuffle, cut into chunks of 50 batches, sort each chunk by length
        perm = rng.permutation(train_idx)
        chunk = config.batch_size * 50
        batches = []
        for start in range(0, len(perm), chunk):
            part = sorted(perm[start : start + chunk], key=lambda i: len(cache.states[i]))
            batches += [part[b : b + config.batch_size] for b in range(0, len(part), config.batch_size)]
        for b in rng.permutation(len(batches)):
            idx = batches[b]
            h, m = _padded(cache, idx)
            logit = _adapter_logit(module, h, m, _attention_mask_4d(encoder, h, m))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if progress is not None:
                progress(len(idx))
        if on_epoch is not None:
            on_epoch(epoch + 1, module)
    return module.eval()


#: Epoch counts the grouped cross-validation chooses between (scored from one run per fold).
MAX_EPOCHS = 2


@dataclass
class CrossFit:
    """The final adapter, out-of-fold logits for the rows it was trained on, and how it was chosen."""

    adapter: EncoderAdapter
    module: Any  # the final adapter as a torch module (LoRA not merged), for scoring cached states
    oof_logit: np.ndarray  # per training row: logit of the fold model that did not see its account
    cv: dict[str, Any]


def cross_fit_adapter(
    encoder: Any,
    cache: TrunkCache,
    labels: np.ndarray,
    groups: np.ndarray,
    train_idx: Sequence[int],
    config: AdapterConfig,
    folds: int = 3,
    max_epochs: int = MAX_EPOCHS,
    log: Callable[[str], None] = print,
) -> CrossFit:
    """Choose the epoch count by account-grouped CV, keep the out-of-fold logits, fit on everything.

    Folds hold out whole accounts (``groups``), so the CV scores what matters: posts of accounts
    never seen. The out-of-fold logits are what the logistic head is trained on: a logit of a model
    that saw the post would look far more certain than it will be on new accounts (stacking).
    """
    import time

    from sklearn.model_selection import GroupKFold

    from detectors.evaluation import auroc

    train_idx = np.asarray(train_idx)
    y = np.asarray(labels, dtype=float)
    g = np.asarray(groups)[train_idx]
    oof = {e: np.full(len(train_idx), np.nan) for e in range(1, max_epochs + 1)}
    fold_auroc: dict[int, list[float]] = {e: [] for e in oof}
    started = time.perf_counter()
    cv_config = AdapterConfig(**{**asdict(config), "epochs": max_epochs})
    for f, (a, b) in enumerate(GroupKFold(n_splits=min(folds, len(np.unique(g)))).split(train_idx, groups=g)):

        def score(epoch: int, module: Any, b: np.ndarray = b, f: int = f) -> None:
            oof[epoch][b] = predict_cached(module, encoder, cache, train_idx[b])
            fold_auroc[epoch].append(auroc(y[train_idx[b]], oof[epoch][b]))
            elapsed = time.perf_counter() - started
            log(f"adapter CV fold {f} epoch {epoch}: AUROC {fold_auroc[epoch][-1]:.3f} ({elapsed:.0f} s)")

        fit_adapter(encoder, cache, y, train_idx[a], cv_config, on_epoch=score)
    mean_auroc = {e: float(np.nanmean(v)) for e, v in fold_auroc.items()}
    epochs = max(mean_auroc, key=lambda e: mean_auroc[e])
    final_config = AdapterConfig(**{**asdict(config), "epochs": epochs})
    module = fit_adapter(encoder, cache, y, train_idx, final_config)
    seconds = round(time.perf_counter() - started)
    log(f"adapter: {epochs} epochs chosen by grouped CV ({mean_auroc}); trained in {seconds} s in all")
    cv = {
        "folds": folds,
        "grouped_cv_auroc_by_epochs": {str(e): v for e, v in mean_auroc.items()},
        "grouped_cv_fold_auroc_by_epochs": {str(e): v for e, v in fold_auroc.items()},
        "out_of_fold_auroc": auroc(y[train_idx], oof[epochs]),
        "chosen_epochs": epochs,
        "training_rows": len(train_idx),
        "training_seconds_cv_and_final": seconds,
    }
    adapter = EncoderAdapter.from_module(module, final_config, cv)
    return CrossFit(adapter, module, oof[epochs], cv)
