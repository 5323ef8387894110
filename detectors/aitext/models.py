"""What the AI-text detector's two models are, and where they run; not where their weights come from.

* **SmolLM2-135M-Instruct** gives the language-model statistics (only the TweepFake heads use them);
* **all-MiniLM-L6-v2** gives the sentence embedding (and, with the fine-tuned adapter, a logit).

Locating the weight packages, checking their SHA-256 and loading them is the serving side's job
(:mod:`stream.models.weights`); the detector receives the loaded tokenizers and models.
"""

from __future__ import annotations

#: Token SmolLM2 was pre-trained with between documents. Prepending it lets the model score a
#: post's first token too, which matters when a post is 20 tokens long.
SMOLLM2_DOCUMENT_START_ID = 0

#: CPU threads per model call, for both runtimes (torch intra-op; ONNX Runtime intra-op), when the
#: configuration does not say (``[aitext] torch_threads`` / ``ort_threads``, read from
#: CHORUS_TORCH_THREADS / CHORUS_ORT_THREADS, or ``--threads``; see :mod:`stream.models.threads`); the
#: one place this default lives. Measured on the 2-core development machine shared with other jobs,
#: the whole extractor on 64 validation tweets, 5 interleaved runs (``bench/bench_aitext.py --onnx``):
#: 2 threads (torch with OMP_WAIT_POLICY=PASSIVE, ONNX Runtime without spinning) run ~2x faster while
#: the second core is idle (torch 8.9 vs 4.7 posts/s, ONNX 9.6 vs 5.0, int8 12.2 vs 6.9) and no
#: faster, or slower, once a neighbour takes it (medians 4.2 vs 4.2, 3.9 vs 4.7, 5.8 vs 6.0), at the
#: same CPU time per post. One thread is the setting that is never slower on a shared machine; a
#: worker with two cores of its own should set 2.
DEFAULT_CPU_THREADS = 1


def resolve_device(device: str | None) -> str:
    """``"auto"``/None -> ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
