"""Which AI-text head file is served, and the encoder adapter it names, checked against its hash.

The committed heads live beside the detector code (``detectors/aitext/artifacts/``, named by
:mod:`detectors.aitext.head`); choosing among them depends on which files exist, and the adapter is
trusted only when its SHA-256 is the one the head recorded, so both checks happen here, where files
are opened, and the detector receives the loaded head.
"""

from __future__ import annotations

from pathlib import Path

from detectors.aitext.head import DEFAULT_ARTIFACT, INT8_ARTIFACT, MODERN_ARTIFACT, AiTextHead
from stream.models.weights import file_sha256


def default_head_path(int8: bool = False) -> Path:
    """The head a detector serves when none is named: the modern head (fast, no language model).

    ``int8`` asks for SmolLM2's int8 statistics, which only the TweepFake heads use: then the int8
    TweepFake head (its float32 twin, :data:`~detectors.aitext.head.DEFAULT_ARTIFACT`, is served
    only when named).
    """
    if int8:
        return INT8_ARTIFACT if INT8_ARTIFACT.is_file() else DEFAULT_ARTIFACT
    return MODERN_ARTIFACT if MODERN_ARTIFACT.is_file() else DEFAULT_ARTIFACT


def load_head(path: Path | str | None = None, int8: bool = False) -> AiTextHead:
    """The head at ``path``, else :func:`default_head_path` (``int8``: the head of int8 statistics)."""
    path = Path(path) if path is not None else default_head_path(int8)
    if not path.is_file():
        raise FileNotFoundError(f"no AI-text head at {path}; train one with: chorus train-aitext --out {path}")
    return AiTextHead.from_json(path.read_text(encoding="utf-8"), path=path)


def save_head(head: AiTextHead, path: Path) -> Path:
    """Write ``head`` (its :meth:`~detectors.aitext.head.AiTextHead.to_json`) to ``path``, for training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head.to_json(), encoding="utf-8")
    return path


def verified_adapter(head: AiTextHead) -> Path | None:
    """The encoder adapter ``head`` was trained with (beside its JSON), checked against its recorded hash.

    None for a head without the ``enc_adapter_logit`` feature. A missing file or another adapter is
    refused by name: its logit would not be the feature the head's weights expect.
    """
    if not head.encoder_adapter:
        return None
    base = head.path.parent if head.path is not None else DEFAULT_ARTIFACT.parent
    path = base / head.encoder_adapter["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"aitext head {head.version} needs its encoder adapter {path}; re-run chorus train-aitext"
        )
    if file_sha256(path) != head.encoder_adapter["sha256"]:
        raise ValueError(f"{path} is not the adapter head {head.version} was trained with; re-run chorus train-aitext")
    return path
