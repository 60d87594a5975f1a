"""Run folders: ``runs/<YYYYmmdd-HHMMSS>-<name>/`` created once, never overwritten, written atomically."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = ("embedtune", "torch", "transformers", "sentence-transformers", "datasets", "pytrec-eval-terrier")


def create_run_folder(runs_dir: str | Path, name: str, now: datetime | None = None) -> Path:
    """Create a new, empty run folder ``<runs_dir>/<YYYYmmdd-HHMMSS>-<name>``.

    An existing folder is never reused: on a name clash a suffix ``-2``, ``-3``, ... is added.

    Args:
        runs_dir: Parent folder (created when missing).
        name: Run name (no ``/``).
        now: Timestamp to use (defaults to the current local time).

    Returns:
        The path of the created folder.
    """
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}-{name}"
    for attempt in range(1, 1000):
        folder = runs_dir / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"could not create a fresh run folder for {stem} in {runs_dir}")


def library_versions() -> dict[str, str]:
    """Return the installed versions of the packages that shape a run's results, plus Python's."""
    versions = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_commit(folder: str | Path | None = None) -> str | None:
    """Return the git commit of the embedtune checkout (``+dirty`` when it has changes), or ``None`` outside git."""
    cwd = Path(folder) if folder else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit
