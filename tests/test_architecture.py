"""The architecture is a checked contract: import-linter's contracts (pyproject.toml, run by
``make lint``) hold, a deliberately broken import fails them, and modules stay small."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "connectors", "geo", "schemas")
MAX_LINES = 450
# Exempt by the structure issue: benchmark drivers and the migrations' history.
EXEMPT = ("hub/bench/", "hub/store/migrations/")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_tree(dest: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, before the editable install of the real tree.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("module", "leak", "contract"),
    [
        # hub/store knows tables, not principals
        ("hub/store/_leak.py", "import hub.access\n", "Layers"),
        # hub/api, hub/fusion and connectors never import each other
        ("hub/api/_leak.py", "import hub.fusion.worker\n", "Layers"),
        # connectors need nothing of the hub's database
        ("connectors/_leak.py", "import hub.store.db\n", "Connectors"),
        # a cycle between two sibling modules of one package
        ("hub/fusion/incident/ids.py", "import hub.fusion.incident.model\n", "cycle"),
    ],
)
def test_a_broken_import_fails_the_contracts(
    tmp_path: Path, module: str, leak: str, contract: str
) -> None:
    tree = _copy_tree(tmp_path)
    target = tree / module
    before = target.read_text() if target.exists() else ""
    target.write_text(before + leak)
    result = _lint_imports(tree)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert any(contract in line for line in broken), result.stdout


def test_the_contracts_hold(tmp_path: Path) -> None:
    """The control of the test above: the same copy, unbroken, passes."""
    result = _lint_imports(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_modules_stay_small() -> None:
    too_long = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(EXEMPT):
                continue
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                too_long[rel] = lines
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
