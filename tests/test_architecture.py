"""The rules that make the layout worth having, checked on the source itself."""

from __future__ import annotations

import ast

import pytest

from tests.support.paths import ROOT


def imports(package: str) -> dict[str, set[str]]:
    """Every module of a package and the modules it imports (at any depth in the file)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[path.relative_to(ROOT).as_posix()] = names
    return found


def offenders(package: str, forbidden: str) -> list[str]:
    return [
        f"{module} imports {name}"
        for module, names in imports(package).items()
        for name in sorted(names)
        if name == forbidden or name.startswith(forbidden + ".")
    ]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("pipeline", "consumer"), ("consumer", "av"), ("consumer", "tests"), ("pipeline", "tests")],
)
def test_layers_keep_their_imports(package: str, forbidden: str) -> None:
    """pipeline never imports consumer; consumer has no media code; neither needs tests."""
    assert offenders(package, forbidden) == []


def test_the_cli_is_a_leaf() -> None:
    """Nothing but the CLI itself (and ``python -m consumer``) imports the CLI."""
    users = [
        module
        for module, names in imports("consumer").items()
        if any(n == "consumer.cli" or n.startswith("consumer.cli.") for n in names)
        and not module.startswith("consumer/cli/")
        and module != "consumer/__main__.py"
    ]
    assert users == []


def test_no_formatter_escapes() -> None:
    """The formatter formats: no escape comments anywhere."""
    escapes = ("fmt: " + "skip", "fmt: " + "off")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("consumer", "pipeline", "tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(escape in line for escape in escapes)
    ]
    assert found == []


def test_modules_stay_short() -> None:
    """No module past about 300 lines without a reason written at its top."""
    long = [
        f"{path.relative_to(ROOT)} ({n} lines)"
        for folder in ("consumer", "pipeline")
        for path in (ROOT / folder).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 320
        and "Longer than 300 lines" not in path.read_text()[:3000]
    ]
    assert long == []
