"""tools/upgrade_check.py (``make upgrade-check``, ``make bounds-check``): which versions it pins, what it reports.

The throwaway environment itself is only built by hand (it installs from the registry); this checks the two decisions
it rests on: the ``==`` pins taken from pyproject's lower bounds, and the report of versions that moved from the lock.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from embedtune.versions import read_lock

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def upgrade_check(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import upgrade_check  # tools/upgrade_check.py

    return upgrade_check


def test_lower_bounds_become_exact_pins_except_torch(upgrade_check):
    requirements = ["torch>=2.11,<3", "transformers>=5.23,<6", "peft[extra] >= 0.22", "numpy", "scipy<2"]
    assert upgrade_check.lower_bound_pins(requirements) == ["transformers==5.23", "peft==0.22"]


def test_installed_versions_use_the_locks_canonical_names(upgrade_check, monkeypatch):
    listing = "Zope.Interface==7.1\ntyping_extensions==4.15.0\n"
    completed = subprocess.CompletedProcess(args=[], returncode=0, stdout=listing)
    monkeypatch.setattr(upgrade_check.subprocess, "run", lambda *args, **kwargs: completed)
    assert upgrade_check.installed_versions(Path(sys.executable)) == {
        "zope-interface": "7.1",
        "typing-extensions": "4.15.0",
    }


def test_only_versions_that_moved_from_the_lock_are_reported(upgrade_check, monkeypatch, capsys):
    locked = read_lock(ROOT / "pylock.toml")
    installed = {**locked, "transformers": "0.0.1", "not-in-the-lock": "1.0"}
    monkeypatch.setattr(upgrade_check, "installed_versions", lambda python: installed)
    upgrade_check.print_differences(Path(sys.executable))
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["versions that differ from pylock.toml:", f"  transformers: {locked['transformers']} -> 0.0.1"]


def test_an_environment_equal_to_the_lock_reports_no_difference(upgrade_check, monkeypatch, capsys):
    monkeypatch.setattr(upgrade_check, "installed_versions", lambda python: read_lock(ROOT / "pylock.toml"))
    upgrade_check.print_differences(Path(sys.executable))
    assert capsys.readouterr().out.splitlines()[0] == "every version equals pylock.toml's"
