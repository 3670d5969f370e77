"""The suite's layout: ``tests/`` mirrors ``gateway/``, the kinds of test are markers, helpers
live in ``tests/support/``, and fixtures are reached by injection only.

- A test file lives in a folder that mirrors a package of ``gateway/`` (``tests/proxy/http1/``
  for ``gateway/proxy/http1/``), or at the top for the top-level modules; never in a folder
  named after a kind of test (``live``, ``scale``, ``fuzz``, ``edge``, ``browser``): a kind is a
  marker (``pytestmark = pytest.mark.live``), so that ``pytest -m "not scale"`` selects.
- Every other module is a helper in ``tests/support/``, or the one root conftest, the only place
  that declares ``pytest_plugins`` (``tests/support/fixtures/``).
- No module of the suite imports a conftest or a test module, and no test module imports a
  fixture plugin: a shared helper is in ``tests/support/``, a shared fixture is injected.
- No two fixture plugins define a fixture of one name.
- Every marker the suite uses is registered (``[tool.pytest.ini_options] markers``).

Each check reads the files as they are (``ast``, nothing imported), and fails naming every file
that breaks it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "gateway"
SUPPORT = TESTS / "support"
KINDS = ("live", "scale", "fuzz", "edge", "browser")


def modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def files_of_tests() -> list[Path]:
    return [p for p in modules() if p.name.startswith("test_")]


def relative(path: Path) -> str:
    return path.relative_to(TESTS.parent).as_posix()


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in the module, wherever it stands (in a function,
    under ``TYPE_CHECKING``); ``from a import b`` yields ``a.b`` as well as ``a``, since ``b``
    may be a module. A relative import is resolved against the module's package."""
    package = path.relative_to(TESTS.parent).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def test_every_test_file_mirrors_a_package_of_the_gateway() -> None:
    misplaced = [
        relative(path)
        for path in files_of_tests()
        if not (PACKAGE / path.parent.relative_to(TESTS)).is_dir()
    ]
    assert not misplaced, f"no gateway/ package matches the folder of: {misplaced}"


def test_no_folder_is_named_after_a_kind_of_test() -> None:
    folders = [
        relative(path)
        for path in TESTS.rglob("*")
        if path.is_dir() and path.name in KINDS and "__pycache__" not in path.parts
    ]
    assert not folders, f"a kind of test is a marker, not a folder: {folders}"


def test_every_folder_of_tests_is_a_package() -> None:
    """Two folders may each hold a ``test_errors.py``: only packages keep their names apart."""
    folders = {path.parent for path in modules()}
    bare = [relative(folder) for folder in sorted(folders) if not (folder / "__init__.py").exists()]
    assert not bare, f"folders without __init__.py: {bare}"


def test_helpers_live_in_the_support_package() -> None:
    stray = [
        relative(path)
        for path in modules()
        if not path.name.startswith("test_")
        and path.name != "__init__.py"
        and path != TESTS / "conftest.py"
        and SUPPORT not in path.parents
    ]
    assert not stray, f"helpers belong in tests/support/ (conftests: the root one only): {stray}"


def test_only_the_root_conftest_declares_plugins() -> None:
    declaring = [
        relative(path)
        for path in modules()
        if path != TESTS / "conftest.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Name) and node.id == "pytest_plugins"
    ]
    assert not declaring, f"pytest_plugins outside tests/conftest.py: {declaring}"


def test_nothing_imports_a_conftest_or_a_test_module() -> None:
    found = [
        f"{relative(path)}:{line} imports {name}"
        for path in modules()
        for line, name in imported(path)
        if name.startswith("tests.")
        and any(part == "conftest" or part.startswith("test_") for part in name.split("."))
    ]
    assert not found, "\n".join(found)


def test_no_test_module_imports_a_fixture_plugin() -> None:
    found = [
        f"{relative(path)}:{line} imports {name}"
        for path in files_of_tests()
        for line, name in imported(path)
        if name == "tests.support.fixtures" or name.startswith("tests.support.fixtures.")
    ]
    assert not found, "fixtures are reached by injection:\n" + "\n".join(found)


def test_no_two_plugins_define_one_fixture() -> None:
    """Every plugin's fixtures are everyone's: one name, one fixture (a second would silently
    replace the first for every test)."""
    where: dict[str, list[str]] = {}
    for path in sorted((SUPPORT / "fixtures").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                "fixture" in ast.unparse(decorator) for decorator in node.decorator_list
            ):
                where.setdefault(node.name, []).append(relative(path))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not twice, f"fixtures defined in more than one plugin: {twice}"


def used_markers(path: Path) -> Iterator[tuple[int, str]]:
    """Every ``pytest.mark.<name>`` in the module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "mark"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "pytest"
        ):
            yield node.lineno, node.attr


def test_every_marker_used_is_registered(pytestconfig: pytest.Config) -> None:
    registered = {
        line.split(":")[0].split("(")[0].strip() for line in pytestconfig.getini("markers")
    }
    assert set(KINDS) <= registered
    unknown = [
        f"{relative(path)}:{line} pytest.mark.{name}"
        for path in modules()
        for line, name in used_markers(path)
        if name not in registered
    ]
    assert not unknown, "register these in pyproject.toml:\n" + "\n".join(unknown)
