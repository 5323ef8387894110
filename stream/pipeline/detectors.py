"""Names a configuration can list under ``worker.detectors``, and how to build each detector.

Detectors are built once per worker process (models load once) and then called per micro-batch.
Each factory hands its detector the settings it needs from the configuration object; detectors
read no environment variable and no file themselves (the models' files are :mod:`stream.models`').
"""

from __future__ import annotations

from collections.abc import Callable

from detectors.base import Detector
from detectors.boilerplate import LlmBoilerplateDetector, NoopDetector
from stream.config import ChorusConfig

DetectorFactory = Callable[[ChorusConfig], Detector]


def _aitext(config: ChorusConfig) -> Detector:
    # Imported on demand: it loads torch and the models, which workers without it should not pay for.
    from stream.models.aitext import aitext_detector

    return aitext_detector(config.aitext)  # the head is read now; the models on the first batch


DETECTOR_FACTORIES: dict[str, DetectorFactory] = {
    "llm_boilerplate": lambda config: LlmBoilerplateDetector(),
    "noop": lambda config: NoopDetector(),
    "aitext": _aitext,
}


def build_detectors(names: tuple[str, ...] | list[str], config: ChorusConfig) -> list[Detector]:
    unknown = [name for name in names if name not in DETECTOR_FACTORIES]
    if unknown:
        raise ValueError(
            f"unknown detector(s) {', '.join(unknown)} in worker.detectors; "
            f"available: {', '.join(sorted(DETECTOR_FACTORIES))}"
        )
    return [DETECTOR_FACTORIES[name](config) for name in names]
