"""The import graph: the two libraries and the command line stay in layers, without circles.

``precompute`` imports neither ``train`` nor ``samaug``; ``train`` imports ``precompute`` but
never ``samaug``; ``samaug`` (the command line, demo and benchmarks) sits above both. Every
import counts, at module level or inside a function, and no module imports anything from
``tests``. Among modules imported at load time there is no circle. Tests share code through
``tests/support`` only: no test imports another test module, nor the benchmarks (a shipped
script, not a test helper).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("precompute", "train", "samaug")
ALLOWED = {"precompute": {"precompute"}, "train": {"precompute", "train"}, "samaug": set(PACKAGES)}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at load time) for every import statement of a file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from . import x` needs only x; `from .m import y` needs m (y may be a module).
            names = [f"{base}.{alias.name}" for alias in node.names]
            targets = names if node.level and not node.module else [base, *names]
        else:
            continue
        found += [(t, id(node) in top_level) for t in targets]
    return found


def graph() -> dict[str, list[tuple[str, bool]]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return {module_name(p): imports(p) for p in files}


def test_each_package_imports_only_the_layers_below_it():
    wrong = []
    for module, targets in graph().items():
        layer = module.split(".")[0]
        for target, _ in targets:
            top = target.split(".")[0]
            if top in (*PACKAGES, "tests") and top not in ALLOWED[layer]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_tests_import_neither_other_tests_nor_the_benchmarks():
    wrong = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for target, _ in imports(path):
            parts = target.split(".")
            if parts[:2] == ["samaug", "bench"] or (
                parts[0] == "tests" and parts[1:2] not in ([], ["support"])
            ):
                wrong.append(f"{module_name(path)} imports {target}")
    assert wrong == []


def test_no_import_circle_at_load_time():
    modules = graph()
    edges = {
        m: sorted({t for t, at_load in targets if at_load and t in modules and t != m})
        for m, targets in modules.items()
    }
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in edges[node]:
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_alone(package):
    import subprocess
    import sys

    code = f"import sys, pkgutil, importlib, {package}\n" + (
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        f"others = {{p for p in {PACKAGES!r} if p != '{package}' and p in sys.modules}}\n"
        f"allowed = {sorted(ALLOWED[package])!r}\n"
        "print(sorted(others - set(allowed)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]"
