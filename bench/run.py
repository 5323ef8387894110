"""Run every benchmark and write one table: ``python bench/run.py [--only NAME ...] [--quick]``.

Each ``bench/bench_*.py`` exposes ``main(argv) -> str`` that prints and returns its Markdown table
(figures are medians of several runs with their spread). This script runs them in turn, so the
pipeline's numbers are never taken while another benchmark loads the machine, and writes
``bench/results/ALL.md``, which is what the README's performance section shows.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, save

BENCH_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=available(), help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller inputs (a smoke test)")
    args = parser.parse_args(argv)

    sections = [f"# Chorus benchmarks\n\nMachine: {machine()}.\n"]
    failed = []
    for name in args.only or available():
        module = importlib.import_module(f"bench.bench_{name}")
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            text = module.main(["--quick"] if args.quick and _accepts_quick(module) else [])
        except Exception:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            failed.append(name)
            continue
        sections.append(f"{text}\n_(took {time.monotonic() - started:.0f} s)_\n")
    path = save("ALL", "\n".join(sections))
    print(f"wrote {path}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _accepts_quick(module: object) -> bool:
    return "--quick" in (getattr(module, "__doc__", "") or "")


if __name__ == "__main__":
    sys.exit(main())
