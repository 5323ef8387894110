"""The ``[aitext]`` settings model loading follows: handed in, or the process's configuration.

The worker hands its configuration object down (the registry passes ``config.aitext``), so nothing
reads the environment after :meth:`stream.config.ChorusConfig.load`. A caller with no configuration
object (a command without ``--config``, a benchmark) gets what that loader reads for the process:
``$CHORUS_CONFIG`` and the ``CHORUS_*`` variables, exactly as every ``chorus`` command does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream.config import AiTextConfig


def aitext_settings(settings: AiTextConfig | None = None) -> AiTextConfig:
    """``settings`` when given, else the process configuration's ``[aitext]`` section."""
    if settings is not None:
        return settings
    from stream.config import ChorusConfig  # imported late: stream.config pulls in the coordination code

    return ChorusConfig.load().aitext
