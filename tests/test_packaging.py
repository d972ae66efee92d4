"""The installable layout: the commands live inside their packages, featstore never imports probes."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_featstore_never_imports_upward():
    upward = {(str(p.relative_to(ROOT)), m) for p in (ROOT / "featstore").rglob("*.py")
              for m in _imported_modules(p) if m.split(".")[0] in {"probes", "cli"}}
    assert not upward, f"featstore imports the packages built on it: {sorted(upward)}"


def test_no_generic_top_level_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(include) == ["featstore*", "probes*"]
    scripts = project["project"]["scripts"]
    assert scripts == {"featstore": "featstore.cli:featstore_app", "probes": "probes.cli:probes_app"}
    assert not (ROOT / "cli").exists()
    users = project["project"]["entry-points"]["featstore.set_users"]
    assert users == {"probes": "probes.runs:used_keys"}


@pytest.mark.parametrize("package", ["featstore", "probes"])
def test_python_dash_m_runs_the_command_line(package):
    done = subprocess.run([sys.executable, "-m", package, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"Usage: {package}" in done.stdout


def test_one_error_boundary_for_both_command_lines():
    from featstore.cli import boundary as shared
    import probes.cli.commands as probes_commands
    import featstore.cli.commands as featstore_commands

    assert probes_commands.boundary is shared.boundary is featstore_commands.boundary
