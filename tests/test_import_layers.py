"""The import-layer contract: each folder may import only the layers below it.

    command line (stream.cli), console (dashboards)
      -> pipeline / coordination / evaluation / training
      -> review / policy
      -> kafka / store / files / models / simulation
      -> config
      -> detectors (pure: imports nothing of Chorus outside detectors)

The graph is read from the source (every ``import``, also those inside functions, which is where a
cycle usually hides), so a new module is checked without being listed here. A folder of ``stream``
that is not in :data:`LAYERS` fails the test: its place in the layers has to be decided, not guessed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Rank of each package prefix; an import must not point at a higher rank.
LAYERS: dict[str, int] = {
    "stream.cli": 6,
    "dashboards": 6,
    "stream.pipeline": 5,
    "stream.coordination": 5,
    "stream.evaluation": 5,
    "stream.training": 5,
    "stream.review": 4,
    "stream.policy": 4,
    "stream.simulation": 3,
    "stream.kafka": 3,
    "stream.store": 3,
    "stream.files": 3,
    "stream.models": 3,
    "stream.config": 2,
    "detectors": 1,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    return {
        module_name(p): p
        for folder in ("stream", "dashboards", "detectors")
        for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    }


def imported_modules(path: Path, name: str) -> set[str]:
    """Every Chorus module ``path`` imports, at the top or inside functions (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {m for m in found if m.split(".")[0] in {"stream", "dashboards", "detectors"}}


def rank(module: str) -> int | None:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {name: {m for m in imported_modules(path, name) if m in modules} for name, path in modules.items()}


def test_every_stream_folder_has_a_layer() -> None:
    unplaced = sorted(
        name for name in product_modules() if name.count(".") >= 1 and name != "stream" and rank(name) is None
    )
    assert not unplaced, f"modules outside every layer (add their folder to LAYERS): {unplaced}"


def test_no_import_points_up_a_layer() -> None:
    upward = [
        f"{importer} ({rank(importer)}) imports {imported} ({rank(imported)})"
        for importer, targets in sorted(import_graph().items())
        for imported in sorted(targets)
        if rank(importer) is not None and rank(imported) is not None and rank(imported) > rank(importer)
    ]
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_nothing_imports_the_command_line() -> None:
    offenders = [
        f"{importer} imports {imported}"
        for importer, targets in sorted(import_graph().items())
        if not importer.startswith("stream.cli")
        for imported in sorted(targets)
        if imported.startswith("stream.cli")
    ]
    assert not offenders, "\n".join(offenders)


def reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("stage", ["stream.pipeline.worker", "stream.coordination.coordinator"])
def test_the_stream_stages_do_not_load_console_code(stage: str) -> None:
    console = sorted(m for m in reachable(stage, import_graph()) if m.startswith(("stream.review", "dashboards")))
    assert not console, f"{stage} reaches console code: {console}"


def test_packages_import_each_other_without_cycles() -> None:
    """Between folders (stream.kafka, stream.store, ...) the imports form no cycle."""

    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "stream" else ".".join(parts[:3 if parts[0] == "detectors" else 1])

    edges: dict[str, set[str]] = {}
    for importer, targets in import_graph().items():
        for imported in targets:
            if package(importer) != package(imported):
                edges.setdefault(package(importer), set()).add(package(imported))
    cycles = sorted(p for p in edges if p in reachable(p, edges))
    assert not cycles, f"folders on an import cycle: {cycles}"


def test_the_contract_sees_a_violation(tmp_path: Path) -> None:
    """The reader finds function-level and relative imports (what a hidden upward import looks like)."""
    path = tmp_path / "stream" / "store" / "leak.py"
    path.parent.mkdir(parents=True)
    path.write_text("def f():\n    from ..cli import main\n    import stream.pipeline.worker\n", encoding="utf-8")
    found = imported_modules(path, "stream.store.leak")
    assert {"stream.cli", "stream.cli.main", "stream.pipeline.worker"} <= found
    assert rank("stream.cli.main") > rank("stream.store.leak")
