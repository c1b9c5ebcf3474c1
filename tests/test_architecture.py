"""The layering holds: no import cycle in cache_tools (function-level imports included), data
flows one way (decorators -> engine -> backend contract -> adapters), and nothing above the
adapters names a concrete adapter or a BACKEND string."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cache_tools"
ADAPTERS = {f"cache_tools.backends.{name}" for name in ("redis", "memcached", "uwsgi", "local")}
ADAPTERS.add("cache_tools.backends.generic")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every cache_tools module ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_no_import_cycles():
    edges = graph()
    cycles = []

    def visit(node, stack, done):
        if node in stack:
            cycles.append([*stack[stack.index(node) :], node])
            return
        if node in done:
            return
        for target in sorted(edges.get(node, ())):
            # A package's __init__ importing its own submodules is how packages work.
            if not target.startswith(f"{node}.") and not node.startswith(f"{target}."):
                visit(target, [*stack, node], done)
        done.add(node)

    done: set[str] = set()
    for node in sorted(edges):
        visit(node, [], done)
    assert not cycles, cycles


def test_adapters_are_named_only_inside_the_backends_package():
    for module, targets in graph().items():
        if module.startswith("cache_tools.backends"):
            continue
        assert not targets & ADAPTERS, (module, targets & ADAPTERS)


def test_backend_strings_are_read_only_by_the_adapter_lookup():
    for path in PACKAGE.rglob("*.py"):
        if module_name(path) in ("cache_tools.backends", "cache_tools.backends.uwsgi"):
            continue
        assert '"BACKEND"' not in path.read_text(), path


def test_the_backends_never_import_the_layers_above_them():
    above = {
        "cache_tools.aside",
        "cache_tools.views",
        "cache_tools.locks",
        "cache_tools.update",
        "cache_tools.flight",
        "cache_tools.stats",
        "cache_tools.warmup",
        "cache_tools.checks",
        "cache_tools.orphans",
    }
    for module, targets in graph().items():
        if module.startswith("cache_tools.backends"):
            assert not targets & above, (module, targets & above)
