"""The package's layers, bottom to top; a module may import only from its own layer or those below.

Parsed with ``ast`` (nothing is imported), so a new upward import fails here before it tangles the flow.
"""

import ast
from pathlib import Path

import minibatch_core

PACKAGE = Path(minibatch_core.__file__).parent

# bottom to top; the utilities at the root (errors, fsio) are importable from everywhere
LAYERS = ["errors", "fsio", "input", "engines", "running", "records", "sweep", "analysis", "presentation",
          "commands", "bench", "cli", "__main__"]
RANK = {name: (0 if name in ("errors", "fsio") else i) for i, name in enumerate(LAYERS)}
# the one upward import: RunResult.to_frame() is the records layer's writer (records.rows.run_rows), called
# inside the method, so a result's frame and runs.csv's rows cannot differ
ALLOWED = {("running/results.py", "minibatch_core.records.rows")}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "minibatch_core" and len(parts) > 1 else None


def _imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, imported module) of every import in ``path``, a module placed at ``root`` (the package)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(("minibatch_core", *path.relative_to(root).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
            found += [(node.lineno, t) for t in targets]
    return found


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        assert rel.parts[0].removesuffix(".py") in RANK, f"{rel} is in no layer: add it to LAYERS"


def test_no_module_imports_a_layer_above_it():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1 and rel.name == "__init__.py":
            continue
        own = RANK[rel.parts[0].removesuffix(".py")]
        for line, module in _imports(path):
            layer = _layer(module)
            if layer is not None and layer in RANK and RANK[layer] > own and (str(rel), module) not in ALLOWED:
                upward.append(f"{rel}:{line} imports {module}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    # the test above must be able to fail: parse a module placed as if in the input layer that imports a
    # command (absolute) and a presentation module (relative); written outside the package tree
    probe = tmp_path / "input" / "_layering_probe.py"
    probe.parent.mkdir()
    probe.write_text("from minibatch_core.commands import run\nfrom ..presentation import plots\n")
    found = [m for _, m in _imports(probe, root=tmp_path)]
    assert [_layer(m) for m in found] == ["commands", "presentation"]
