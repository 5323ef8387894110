"""Which AI-text head file is served, and the encoder adapter it names, checked against its hash.

The committed heads live beside the detector code (``detectors/aitext/artifacts/``, named by
:mod:`detectors.aitext.head`); choosing among them depends on which files exist, and the adapter is
trusted only when its SHA-256 is the one the head recorded, so both checks happen here, where files
are opened, and the detector receives the loaded head.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from detectors.aitext.head import DEFAULT_ARTIFACT, INT8_ARTIFACT, MODERN_ARTIFACT, AiTextHead
from detectors.aitext.lm_stage import STAGE_SUFFIX, LmStage
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


#: The SmolLM2 second stage of the modern head (``chorus train-aitext-stage``), served when
#: ``[aitext] lm_stage`` is on: a few hundred numbers, tied to the head by its coefficients' digest.
LM_STAGE_ARTIFACT = MODERN_ARTIFACT.with_name("aitext_lm_stage.json")


def save_lm_stage(head: AiTextHead, stage: LmStage, path: Path = LM_STAGE_ARTIFACT) -> Path:
    """Write ``stage`` with the version and digest of the ``head`` it was fitted over."""
    from detectors.aitext.fit import coef_digest

    data = {"head_version": head.version, "head_coef_digest": coef_digest(head), "lm_stage": stage.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, allow_nan=True) + "\n", encoding="utf-8")
    return path


def with_lm_stage(head: AiTextHead, path: Path | str = LM_STAGE_ARTIFACT) -> AiTextHead:
    """``head`` carrying the stage in ``path``; refused when the stage was fitted over another head."""
    from detectors.aitext.fit import coef_digest

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SmolLM2 stage at {path}; fit one with chorus train-aitext-stage")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("head_coef_digest") != coef_digest(head):
        raise ValueError(
            f"the SmolLM2 stage in {path} was fitted over head {data.get('head_version')}, not over {head.version} "
            "(its digest differs); re-run chorus train-aitext-stage"
        )
    return dataclasses.replace(head, lm_stage=data["lm_stage"], version=f"{head.version}+{STAGE_SUFFIX}")
