"""The code rules of the developers' guide that a machine can check, so that CI (which runs only pytest) keeps them.

Ruff clean (``make lint``: lint rules, docstrings included, and formatting, as pyproject.toml configures them) and no
module of the package over :data:`MAX_MODULE_LINES` lines. The ruff checks hold for the lock's ruff: a newer one may
add rules or change its style, so ``make upgrade-check`` leaves them out (marker ``lock``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["src", "tests", "bench", "tools"]
"""The folders ``make lint`` checks."""
MAX_MODULE_LINES = 400


def ruff(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", *arguments], cwd=cwd, capture_output=True, text=True)


def long_modules(package: Path, limit: int = MAX_MODULE_LINES) -> list[str]:
    """Return ``path: N lines`` for each Python module below ``package`` longer than ``limit`` lines."""
    lengths = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in sorted(package.rglob("*.py"))}
    return [f"{path.relative_to(package)}: {count} lines" for path, count in lengths.items() if count > limit]


@pytest.mark.lock
def test_ruff_finds_nothing_to_report():
    result = ruff("check", "--no-cache", *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.lock
def test_the_code_is_formatted_as_ruff_formats_it():
    result = ruff("format", "--check", "--no-cache", *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_of_the_package_is_over_the_limit():
    assert long_modules(ROOT / "src" / "embedtune") == []


def test_the_checks_catch_what_they_forbid(tmp_path):
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
    module = tmp_path / "src" / "bad.py"
    module.parent.mkdir()
    module.write_text("def public():\n    return  1\n" + "\n" * MAX_MODULE_LINES, encoding="utf-8")
    assert ruff("check", "--no-cache", "src", cwd=tmp_path).returncode == 1  # no docstring, blank lines at the end
    assert ruff("format", "--check", "--no-cache", "src", cwd=tmp_path).returncode == 1
    assert long_modules(tmp_path / "src") == [f"bad.py: {MAX_MODULE_LINES + 2} lines"]
