"""Run every benchmark, write one table per machine kind, and put the tables into the README.

    python bench/run.py                       # every benchmark, then the README's performance section
    python bench/run.py --only pipeline soak  # some; the others' last results stay in the table
    python bench/run.py --quick               # smoke test: small inputs, written to a scratch folder only
    python bench/run.py --readme-only         # re-insert the committed tables and eval summary, run nothing
    python bench/run.py --eval                # re-run `chorus eval` for the quality block, then --readme-only
    python bench/run.py --bench-args aitext="--random-weights --tokenizers DIR"   # extra arguments for one

Each ``bench/bench_*.py`` exposes ``main(argv) -> str`` that prints and returns its Markdown table
(figures are medians of several runs with their min-max spread, the machine and the date above
each table). This script runs them in turn, so the pipeline's numbers are never taken while another
benchmark loads the machine, and writes

* ``bench/results/NAME.md`` per benchmark and ``bench/results/ALL.md``, all of them in order, on a
  machine without a GPU;
* ``bench/results/NAME-gpu-<device>.md`` and ``ALL-gpu-<device>.md`` where ``torch.cuda.is_available()``
  (the AI-text benchmark then runs with ``--device cuda``), so a lent GPU machine adds its rows;

and then replaces the README's text between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``
with every ``ALL*.md`` (CPU first), headings moved down to nest under ``## Performance``, and the
text between ``<!-- eval:begin -->`` and ``<!-- eval:end -->`` with the committed ``chorus eval``
summary (:data:`EVAL_SUMMARY`). ``tests/test_readme_tables.py`` fails when the README differs from
those files, so the README shows measured output and nothing else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CPU_KIND, RESULTS, machine, machine_kind, result_name

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
README = ROOT / "README.md"

#: The committed summary ``chorus eval`` writes for the README's quality block (see :func:`eval_command`).
EVAL_DIR = Path("docs/eval/aitext-tweepfake")
EVAL_SUMMARY = ROOT / EVAL_DIR / "summary.md"
#: The development data the quality block is measured on, relative to the repository (never copied into it).
EVAL_DATA = Path("../shared/data/aitext/dev_tweepfake_trainval.jsonl.gz")

#: How far headings move down when a results file goes into the README (``#`` -> ``###``).
README_HEADING_SHIFT = 2

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})(\s)")


#: The order benchmarks run and appear in: the pipeline first (on an idle machine), then the rest.
ORDER = ("pipeline", "soak", "aitext", "coordination", "coordination_stream", "coordination_paraphrase",
         "coordination_scaleout")


def available() -> list[str]:
    names = {p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py")}
    return [n for n in ORDER if n in names] + sorted(names - set(ORDER))


# --------------------------------------------------------------------------------------------
# Pure text functions (tested in tests/test_readme_tables.py)


def shift_headings(markdown: str, by: int) -> str:
    """Move every ATX heading ``by`` levels down (at most ``######``), leaving fenced code alone."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            line = _HEADING.sub(lambda m: "#" * min(6, len(m.group(1)) + by) + m.group(2), line)
        out.append(line)
    return "\n".join(out) + ("\n" if markdown.endswith("\n") else "")


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def extract_block(document: str, name: str) -> str:
    """The text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` (without the marker lines)."""
    begin, end = _markers(name)
    _check_markers(document, name)
    inner = document.split(begin, 1)[1].split(end, 1)[0]
    return inner.removeprefix("\n")


def replace_block(document: str, name: str, content: str) -> str:
    """``document`` with the text between the ``NAME`` markers replaced by ``content``.

    Pure and idempotent: replacing with the same content twice gives the same document. Raises
    ValueError naming the markers when they are missing, repeated or out of order.
    """
    begin, end = _markers(name)
    _check_markers(document, name)
    before, rest = document.split(begin, 1)
    after = rest.split(end, 1)[1]
    body = content.strip("\n")
    return f"{before}{begin}\n{body}\n{end}{after}" if body else f"{before}{begin}\n{end}{after}"


def _check_markers(document: str, name: str) -> None:
    begin, end = _markers(name)
    counts = {marker: document.count(marker) for marker in (begin, end)}
    if counts != {begin: 1, end: 1}:
        found = ", ".join(f"{marker} x{n}" for marker, n in counts.items())
        raise ValueError(f"the README needs exactly one {begin} and one {end} line, in that order ({found}); "
                         f"add them where the generated text belongs")  # fmt: skip
    if document.index(begin) > document.index(end):
        raise ValueError(f"{end} comes before {begin}; put the begin marker first")


def not_measured(name: str) -> str:
    """The section of a benchmark that has no results file for this machine kind yet."""
    return (f"## {name}: not yet measured\n\nNot yet measured in this table: run "
            f"`python bench/run.py --only {name}` (on this machine kind).\n")  # fmt: skip


def assemble(kind: str, sections: Sequence[tuple[str, str | None]], machine_line: str, date: str) -> str:
    """One machine kind's ``ALL*.md``: a heading, the machine and date, then each benchmark's table."""
    head = [
        f"# Benchmarks: {kind}",
        "",
        f"Assembled {date} on {machine_line} by `python bench/run.py` from `bench/results/"
        f"{result_name('NAME', kind)}.md`; each table gives the machine and date it was measured on.",
        "",
    ]
    parts = [text.strip("\n") + "\n" if text is not None else not_measured(name) for name, text in sections]
    return "\n".join(head) + "\n" + "\n".join(parts)


def all_files(results: Path) -> list[Path]:
    """Every machine kind's ``ALL*.md``: the CPU one first, then the others by name."""
    cpu = results / "ALL.md"
    others = sorted(p for p in results.glob("ALL-*.md"))
    return ([cpu] if cpu.is_file() else []) + others


def bench_block(results: Path) -> str:
    """What goes between the README's bench markers: every ``ALL*.md`` with its headings moved down."""
    files = all_files(results)
    if not files:
        return "No benchmark results yet: run `python bench/run.py`.\n"
    return "\n".join(shift_headings(p.read_text(encoding="utf-8"), README_HEADING_SHIFT) for p in files)


def eval_block(summary: Path) -> str:
    """What goes between the README's eval markers: the committed ``chorus eval`` summary, headings moved down."""
    if not summary.is_file():
        return f"No quality summary yet: run `python bench/run.py --eval` (writes `{EVAL_DIR}/summary.md`).\n"
    return shift_headings(summary.read_text(encoding="utf-8"), README_HEADING_SHIFT)


def render_readme(document: str, results: Path = RESULTS, summary: Path = EVAL_SUMMARY) -> str:
    """The README with both generated blocks filled from the committed files."""
    document = replace_block(document, "bench", bench_block(results))
    return replace_block(document, "eval", eval_block(summary))


# --------------------------------------------------------------------------------------------
# Running


def update_readme(readme: Path = README) -> bool:
    """Re-insert the committed tables and summary; True when the README changed."""
    before = readme.read_text(encoding="utf-8")
    after = render_readme(before)
    if after != before:
        readme.write_text(after, encoding="utf-8")
    return after != before


def write_all(kind: str, results: Path = RESULTS) -> Path:
    """Assemble this machine kind's ``ALL*.md`` from its per-benchmark files."""
    sections = []
    for name in available():
        path = results / f"{result_name(name, kind)}.md"
        sections.append((name, path.read_text(encoding="utf-8") if path.is_file() else None))
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    path = results / f"{result_name('ALL', kind)}.md"
    path.write_text(assemble(kind, sections, machine(), today), encoding="utf-8")
    return path


def eval_command() -> list[str]:
    """``chorus eval`` on the validation posts of the AI-text head's held-out (evaluate) accounts.

    The accounts come from the committed head artifact, so the quality block follows a retrained
    head. About 450 posts: the features take a few minutes on two cores (the full 23k posts of
    TweepFake would take over an hour at ~5 posts/s).
    """
    import json

    artifact = json.loads((ROOT / "detectors/aitext/artifacts/aitext_head.json").read_text())
    accounts = artifact["training"]["accounts_per_split"]
    if isinstance(accounts, str):  # older artifacts stored the dict's repr
        import ast

        accounts = ast.literal_eval(accounts)
    return ["chorus", "eval", str(EVAL_DATA), "--out", str(EVAL_DIR), "--split", "validation",
            "--groups", *sorted(accounts["evaluate"]), "--no-text"]  # fmt: skip


def _bench_args(name: str, quick: bool, kind: str, extra: dict[str, list[str]]) -> list[str]:
    argv = ["--quick"] if quick else []
    if name == "aitext" and kind != CPU_KIND:
        argv += ["--device", "cuda"]
    return argv + extra.get(name, [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=available(), help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true",
                        help="fewer runs, smaller inputs (a smoke test); written to a scratch folder, not the README")
    parser.add_argument("--readme-only", action="store_true",
                        help="run nothing: re-insert the committed ALL*.md files and the eval summary into the README")
    parser.add_argument("--eval", action="store_true", help="re-run `chorus eval` for the README's quality block")
    parser.add_argument("--bench-args", action="append", default=[], metavar="NAME=ARGS",
                        help="extra arguments for one benchmark, e.g. aitext=\"--posts 50000\"")  # fmt: skip
    args = parser.parse_args(argv)
    extra = {}
    for item in args.bench_args:
        name, sep, rest = item.partition("=")
        if not sep or name not in available():
            parser.error(f"--bench-args wants NAME=ARGS with NAME one of {', '.join(available())}; got {item!r}")
        extra[name] = shlex.split(rest)

    if args.eval:
        command = eval_command()
        print("$ " + shlex.join(command), flush=True)
        code = subprocess.call([str(Path(sys.executable).parent / command[0]), *command[1:]], cwd=ROOT)
        if code:
            return code
    if args.readme_only or args.eval:
        print("README updated" if update_readme() else "README already up to date")
        return 0

    kind = machine_kind()
    results = Path(tempfile.mkdtemp(prefix="chorus-bench-quick-")) if args.quick else RESULTS
    failed = []
    for name in args.only or available():
        module = importlib.import_module(f"bench.bench_{name}")
        started = time.monotonic()
        print(f"== {name} ({kind})", flush=True)
        try:
            text = module.main(_bench_args(name, args.quick, kind, extra))
        except (Exception, SystemExit):  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            failed.append(name)
            continue
        text = f"{text.rstrip()}\n\n_(took {time.monotonic() - started:.0f} s)_\n"
        results.mkdir(parents=True, exist_ok=True)
        (results / f"{result_name(name, kind)}.md").write_text(text, encoding="utf-8")
    path = write_all(kind, results)
    print(f"wrote {path}")
    if not args.quick:
        print("README updated" if update_readme() else "README already up to date")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
