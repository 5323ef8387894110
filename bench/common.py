"""What every benchmark shares: the machine line, medians with spread, the table format, where results go.

Results are kept per machine kind: on a machine without a GPU a benchmark's table is
``bench/results/NAME.md``; where ``torch.cuda.is_available()`` it is ``NAME-gpu-<device>.md``, so a run on
a lent GPU machine adds its files beside the CPU ones instead of replacing them.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

#: The machine kind of a computer without a usable GPU; its results carry no suffix.
CPU_KIND = "cpu"


@functools.cache
def gpu_name() -> str | None:
    """The first CUDA device's name, or None (no torch, or no GPU)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def slug(text: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_kind() -> str:
    """``cpu``, or ``gpu-<device name>`` where CUDA is available (``CHORUS_BENCH_MACHINE`` overrides)."""
    forced = os.environ.get("CHORUS_BENCH_MACHINE")
    if forced:
        return slug(forced)
    name = gpu_name()
    return f"gpu-{slug(name)}" if name else CPU_KIND


def result_name(name: str, kind: str | None = None) -> str:
    """A benchmark's result file stem on this machine kind: ``NAME`` on CPU, ``NAME-<kind>`` elsewhere."""
    kind = kind or machine_kind()
    return name if kind == CPU_KIND else f"{name}-{kind}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = gpu_name()
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GB, " + (f"GPU {gpu}, " if gpu else "no GPU, ")
            + f"Python {platform.python_version()}")  # fmt: skip


def median_spread(values: Sequence[float]) -> str:
    """'median (min-max)': the spread says how far one run can be trusted."""
    med = statistics.median(values)
    return f"{_fmt(med)} ({_fmt(min(values))}-{_fmt(max(values))})"


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str] = ()) -> str:
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    lines = [f"## {title}", "", f"Machine: {machine()}. Date: {today}.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if notes:
        lines.append("")
        lines += list(notes)
    return "\n".join(lines) + "\n"


def save(name: str, text: str, results: Path | None = None) -> Path:
    """Write ``text`` as this machine kind's result file for ``name`` (see :func:`result_name`)."""
    folder = results or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result_name(name)}.md"
    path.write_text(text)
    return path
