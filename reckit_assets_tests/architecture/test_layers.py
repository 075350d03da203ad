"""The package's shape: core/ follows the flow, imports only point down, and nothing is circular."""

from __future__ import annotations

import ast
from pathlib import Path

import reckit_assets

PACKAGE_ROOT = Path(reckit_assets.__file__).parent
CORE = PACKAGE_ROOT / "core"
# The flow, bottom to top. A stage may import itself, the shared layer and earlier stages only.
SHARED = {"checks", "io"}
STAGES = ["ingest", "features", "evaluation", "training", "release", "monitoring", "steps"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every reckit_assets module a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("reckit_assets"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("reckit_assets")
        ):
            found.add(node.module)
            # `from reckit_assets.core.features import online` imports a submodule
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if _file_of(candidate) is not None:
                    found.add(candidate)
    return found


def _file_of(module: str) -> Path | None:
    base = PACKAGE_ROOT.parent / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        name = _module_name(path)
        graph[name] = {m for m in _imports(path) if _file_of(m) is not None and m != name}
    return graph


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 3 or parts[1] != "core":
        return None
    return parts[2]


def test_core_holds_only_stage_packages_and_the_shared_layer():
    loose = sorted(
        p.name for p in CORE.iterdir() if p.suffix == ".py" and p.stem not in {"__init__", *SHARED}
    )
    assert loose == [], f"loose modules in core/ (move them into a stage): {loose}"
    packages = sorted(p.name for p in CORE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert set(packages) <= set(STAGES) | SHARED, packages


def test_core_stages_import_only_earlier_stages_and_the_shared_layer():
    order = {stage: i for i, stage in enumerate(STAGES)}
    bad = []
    for module, deps in _graph().items():
        stage = _stage(module)
        if stage is None:
            continue
        for dep in deps:
            if dep.startswith("reckit_assets.") and not dep.startswith("reckit_assets.core"):
                bad.append(f"{module} -> {dep} (core never imports the Dagster layer or the world)")
                continue
            target = _stage(dep)
            if target is None or target in SHARED or target == stage:
                continue
            if stage in SHARED or order[target] > order[stage]:
                bad.append(f"{module} ({stage}) -> {dep} ({target})")
    assert bad == [], "imports that run back up the flow:\n" + "\n".join(sorted(bad))


def test_core_never_imports_dagster():
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(
                n == "dagster" or n.startswith("dagster.") or n.startswith("dagster_")
                for n in names
            ):
                offenders.append(str(path.relative_to(PACKAGE_ROOT)))
    assert offenders == []


def test_no_import_cycles_in_the_package():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            # a package importing its own submodule is not a cycle of concern
            if state.get(dep) == 1:
                if not node.startswith(dep + ".") and not dep.startswith(node + "."):
                    cycles.append([*stack[stack.index(dep) :], dep])
            elif state.get(dep) is None:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_serving_imports_neither_the_simulated_world_nor_test_support():
    """The service is product: its test fixtures (simulated registries) live with the tests."""
    import serving

    serving_root = Path(serving.__file__).parent
    forbidden = ("reckit_assets.simulation", "reckit_assets_tests")
    offenders = []
    for path in sorted(serving_root.rglob("*.py")):
        rel = path.relative_to(serving_root)
        if rel.parts[0] == "tests":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from reckit_assets import simulation` names the package in the alias
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            bad = [n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden)]
            if bad:
                offenders.append(f"serving/{rel}:{node.lineno} imports {bad[0]}")
    assert offenders == [], "\n".join(offenders)


# multiprocessing's internals: what a Python release may change without notice (its public API is
# get_context, Process, Pipe, Connection, set_forkserver_preload and the forkserver module's
# ensure_running).
MULTIPROCESSING_INTERNALS = (
    "multiprocessing.popen_fork",
    "multiprocessing.popen_forkserver",
    "multiprocessing.popen_spawn_posix",
    "multiprocessing.reduction",
    "multiprocessing.resource_tracker",
    "multiprocessing.spawn",
    "multiprocessing.util",
    "multiprocessing.context",
)


def test_the_product_uses_no_multiprocessing_internals():
    """No module of the product imports multiprocessing's internals, or names a private
    attribute of multiprocessing (``multiprocessing.x._y``)."""
    import serving

    offenders = []
    for root in (PACKAGE_ROOT, Path(serving.__file__).parent):
        for path in sorted(root.rglob("*.py")):
            if "tests" in path.relative_to(root).parts:
                continue
            source = path.read_text()
            for node in ast.walk(ast.parse(source, filename=str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                    names = [ast.unparse(node)]
                bad = [
                    n
                    for n in names
                    if n.startswith(MULTIPROCESSING_INTERNALS)
                    or (n.startswith(("multiprocessing.", "forkserver.")) and "._" in n)
                ]
                if bad:
                    offenders.append(f"{path.name}:{node.lineno} {bad[0]}")
    assert offenders == []
