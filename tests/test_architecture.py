"""The layering holds: no import cycle in cache_tools (function-level imports included), data
flows one way (decorators -> engine -> backend contract -> adapters), nothing above the
adapters names a concrete adapter, a BACKEND string or a client library, operations are named
by reference, and modules and functions stay small enough to read.

Each rule is a function of source text, and each is shown catching a deliberate violation
(``test_each_rule_catches_a_violation``), so that none passes for want of looking."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cache_tools"
#: The adapters and what only they use (everything in cache_tools.backends but the contract
#: and the lookup).
ADAPTERS = {
    f"cache_tools.backends.{path.stem}"
    for path in (PACKAGE / "backends").glob("*.py")
    if path.stem not in ("__init__", "base", "records")
}
#: Client libraries: only adapters (and the test helpers that start real servers) talk to them.
CLIENT_LIBRARIES = {"redis", "valkey", "pymemcache", "pylibmc", "django_redis", "django_valkey"}
MAY_USE_CLIENTS = ("cache_tools.backends", "cache_tools.testing")
LONGEST_MODULE = 700  # lines
LONGEST_FUNCTION = 70  # lines, its docstring left out


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every module the source of module ``name`` imports, anywhere in it, absolute."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every cache_tools module ``path`` imports."""
    name = module_name(path)
    found = imported(path.read_text(), name, path.name == "__init__.py")
    return {m for m in found if m in MODULES and m != name}


def graph() -> dict[str, set[str]]:
    return {name: imports_of(path) for name, path in MODULES.items()}


def cycles_in(edges: dict[str, set[str]]) -> list[list[str]]:
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
    return cycles


def adapters_named(module: str, targets: set[str]) -> set[str]:
    return set() if module.startswith("cache_tools.backends") else targets & ADAPTERS


def client_libraries_used(module: str, source: str) -> set[str]:
    if module.startswith(MAY_USE_CLIENTS):
        return set()
    roots = {name.split(".")[0] for name in imported(source, module)}
    return roots & CLIENT_LIBRARIES


def layers_above(module: str, targets: set[str]) -> set[str]:
    """What a backends module imports from the layers above the contract."""
    if not module.startswith("cache_tools.backends"):
        return set()
    return {t for t in targets if not t.startswith("cache_tools.backends") and t in ABOVE}


#: The layers above the backends: everything but the contract's own helpers (keys, settings,
#: errors, process-wide utilities, the drivers).
BELOW_OR_BESIDE = {
    "cache_tools",
    "cache_tools.conf",
    "cache_tools.keys",
    "cache_tools.errors",
    "cache_tools._process",
    "cache_tools.drive",
}
ABOVE = {
    name
    for name in MODULES
    if not name.startswith(("cache_tools.backends", "cache_tools.testing"))
    and name not in BELOW_OR_BESIDE
}


def operations_named_by_string(source: str) -> list[int]:
    """Lines where steps ask for an operation by a string rather than the method itself."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        asks = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ask"
        if asks and node.args and isinstance(node.args[0], ast.Constant):
            lines.append(node.lineno)
    return lines


def long_functions(source: str) -> list[tuple[str, int]]:
    """Functions longer than ``LONGEST_FUNCTION`` lines, their docstrings left out."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                length -= body[0].end_lineno - body[0].lineno + 1  # type: ignore[operator]
            if length > LONGEST_FUNCTION:
                found.append((node.name, length))
    return found


def test_no_import_cycles():
    assert not cycles_in(graph())


def test_adapters_are_named_only_inside_the_backends_package():
    for module, targets in graph().items():
        assert not adapters_named(module, targets), module


def test_client_libraries_are_used_only_by_adapters_and_test_servers():
    for module, path in MODULES.items():
        assert not client_libraries_used(module, path.read_text()), module


def test_backend_strings_are_read_only_by_the_adapter_lookup():
    for path in PACKAGE.rglob("*.py"):
        if module_name(path) in ("cache_tools.backends", "cache_tools.backends.uwsgi"):
            continue
        assert '"BACKEND"' not in path.read_text(), path


def test_the_backends_never_import_the_layers_above_them():
    for module, targets in graph().items():
        assert not layers_above(module, targets), module


def test_operations_are_named_by_the_method_not_a_string():
    for path in PACKAGE.rglob("*.py"):
        assert not operations_named_by_string(path.read_text()), path


def test_modules_and_functions_stay_small():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) <= LONGEST_MODULE, path
        assert not long_functions(source), (path, long_functions(source))


def test_no_operation_is_looked_up_with_getattr_hooks():
    """No ``__getattr__`` standing in for a contract's methods, no methods set in a loop."""
    for path in (PACKAGE / "backends").glob("*.py"):
        tree = ast.parse(path.read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert "__getattr__" not in defined, path
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        assert not any(getattr(c.func, "id", None) == "setattr" for c in calls), path


VIOLATIONS = {
    "cycle": lambda: cycles_in(
        {"cache_tools.a": {"cache_tools.b"}, "cache_tools.b": {"cache_tools.a"}}
    ),
    "adapter named": lambda: adapters_named("cache_tools.flight", {"cache_tools.backends.redis"}),
    "client library": lambda: client_libraries_used("cache_tools.local_copies", "import redis\n"),
    "client library, nested": lambda: client_libraries_used(
        "cache_tools.views", "def f():\n    from django_redis import get_redis_connection\n"
    ),
    "layer above": lambda: layers_above("cache_tools.backends.redis", {"cache_tools.flight"}),
    "operation by string": lambda: operations_named_by_string(
        'def s():\n    yield from ask("fetch", k)\n'
    ),
    "long function": lambda: long_functions(
        'def f():\n    """Doc."""\n' + "    x = 1\n" * (LONGEST_FUNCTION + 1)
    ),
}


@pytest.mark.parametrize("rule", sorted(VIOLATIONS))
def test_each_rule_catches_a_violation(rule):
    assert VIOLATIONS[rule]()


def test_a_docstring_does_not_count_toward_a_functions_length():
    body = "    x = 1\n" * (LONGEST_FUNCTION - 1)  # and the def line
    assert not long_functions('def f():\n    """' + "\n" * 30 + '"""\n' + body)
