"""The import graph: the house's layers, stated once here, and no circle anywhere.

``LAYERS`` lists every package of the three libraries, lowest first: a package imports only
packages of lower layers (and itself). So ``precompute`` imports neither ``train`` nor
``samaug``, ``train`` imports ``precompute`` but never ``samaug``, and ``samaug`` (the
command line, demo, reproduction and benchmarks) sits above both; inside each, the wings are
ordered too (``train.data`` below the protocols, the protocols below inference, inference
below training, training below results). A new package must be given its layer here. Every
import counts, at module level or inside a function (imports for type checking only, under
``if TYPE_CHECKING``, do not), and no module imports anything from ``tests``. Among modules
imported at load time there is no circle, and no circle among packages either. Tests share
code through ``tests/support`` only: no test imports another test module, nor the benchmarks
(a shipped script, not a test helper).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("precompute", "train", "samaug")
ALLOWED = {"precompute": {"precompute"}, "train": {"precompute", "train"}, "samaug": set(PACKAGES)}
# Every package, lowest layer first; packages of one layer do not import each other.
LAYERS = (
    ("precompute",),  # types, checks, files, limits, devices, downloads, priors, imageio
    ("precompute.readers", "precompute.maskers"),  # datasets as downloaded; SAM and others
    ("precompute.store",),  # the only zarr code
    ("precompute.pipeline",),  # the Dask job: readers -> masker -> priors -> store
    ("train.metrics", "train.models"),
    ("train",),  # tasks, fusion, modes, strategies, windows, losses, targets
    ("train.data",),  # datasets streamed from a store, the loader, augmentation
    ("train.protocols",),  # training data and test-time prediction of each protocol
    ("train.inference",),  # the predictor
    ("train.training",),  # config, loop, optimisation, checkpoints, validation
    ("train.results",),  # loading models, eval, predict, score, bundles, tables
    ("samaug.demo", "samaug.reproduce"),
    ("samaug.bench",),
    ("samaug.commands",),
    ("samaug",),  # the command line's entry point
)
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at load time) for every import statement of a file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
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


def package_of(module: str) -> str:
    """The package a module belongs to (itself for a package's ``__init__``)."""
    return module if (ROOT / module.replace(".", "/")).is_dir() else module.rpartition(".")[0]


def package_edges() -> set[tuple[str, str]]:
    """(importing package, imported package) for every import between two packages."""
    modules = graph()
    return {
        (package_of(module), package_of(target))
        for module, targets in modules.items()
        for target, _ in targets
        if target in modules and package_of(target) != package_of(module)
    }


def test_every_package_has_a_layer_and_imports_only_lower_ones():
    packages = {package_of(m) for m in graph()}
    assert packages == set(RANK), "give each new package its layer in LAYERS"
    wrong = [f"{a} imports {b}" for a, b in sorted(package_edges()) if RANK[b] >= RANK[a]]
    assert wrong == []


def test_no_circle_among_packages():
    edges: dict[str, set[str]] = {}
    for a, b in package_edges():
        edges.setdefault(a, set()).add(b)

    def reach(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    assert sorted(p for p in edges if p in reach(p)) == []


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
