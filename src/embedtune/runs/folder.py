"""Run folders: ``runs/<YYYYmmdd-HHMMSS>-<name>/`` created once, never overwritten, written atomically."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path

from embedtune.errors import describe_os_error, shorten
from embedtune.runs.errors import RunStoreError

MAX_FOLDER_ATTEMPTS = 999
"""How many ``-2``, ``-3`` ... suffixes are tried before giving up on a clashing run folder name."""

TRACKED_PACKAGES = ("embedtune", "torch", "transformers", "sentence-transformers", "datasets", "pytrec-eval-terrier")


def create_run_folder(runs_dir: str | Path, name: str, now: datetime | None = None) -> Path:
    """Create a new, empty run folder ``<runs_dir>/<YYYYmmdd-HHMMSS>-<name>``.

    An existing folder (or file) is never reused: on a name clash a suffix ``-2``, ``-3``, ... is added.

    Args:
        runs_dir: Parent folder (created when missing).
        name: Run name (non-empty, no ``/``).
        now: Timestamp to use (defaults to the current local time).

    Returns:
        The path of the created folder.

    Raises:
        RunStoreError: naming the path, if ``name`` is not a valid folder name part, or ``runs_dir`` or the run
            folder cannot be created (``runs_dir`` is a file, a parent is not writable, a name too long ...).
    """
    check_run_name(name)
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunStoreError(f"cannot create runs folder {runs_dir}: {describe_os_error(error)}") from None
    stem = run_folder_name(name, now or datetime.now())
    for attempt in range(1, MAX_FOLDER_ATTEMPTS + 1):
        folder = runs_dir / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise RunStoreError(f"cannot create run folder {folder}: {describe_os_error(error)}") from None
        return folder
    raise RunStoreError(f"cannot create run folder {runs_dir / stem}: {MAX_FOLDER_ATTEMPTS} such folders exist")


def run_folder_name(name: str, now: datetime) -> str:
    """Return the folder name ``<YYYYmmdd-HHMMSS>-<name>`` of a run started at ``now`` (before any clash suffix)."""
    return f"{now.strftime('%Y%m%d-%H%M%S')}-{name}"


def check_runs_dir(runs_dir: str | Path, name: str | None = None) -> None:
    """Check, creating nothing, that run folders can be created under ``runs_dir``.

    ``runs_dir`` must be a writable folder, or be creatable: its first existing ancestor must then be a writable
    folder. Call this before the slow work (loading a model) so that a bad ``runs_dir`` fails at once.

    Args:
        runs_dir: The folder that will hold run folders.
        name: When given, also check the run name (non-empty, no ``/``, short enough for a folder name).

    Raises:
        RunStoreError: one line naming the path, if ``runs_dir`` is a file, lies under a file, is (or lies under)
            a folder this process cannot write, has a name part too long, or ``name`` is not valid.
    """
    runs_dir = Path(runs_dir)
    if name is not None:
        check_run_name(name)
    for path in (runs_dir, *runs_dir.absolute().parents):
        if _is_existing(path, runs_dir):
            break
    else:  # pragma: no cover - the file-system root always exists
        raise RunStoreError(f"cannot create runs folder {runs_dir}: no existing parent folder")
    _check_writable_folder(path, runs_dir)
    if name is not None:
        _check_folder_name_fits(path, f"{run_folder_name(name, datetime.now())}-{MAX_FOLDER_ATTEMPTS}", runs_dir)


def check_run_name(name: str) -> None:
    """Check that ``name`` can be part of a run folder name: a non-empty string without ``/`` or NUL.

    Raises:
        RunStoreError: quoting the name, if it is not valid.
    """
    if not isinstance(name, str) or not name or "/" in name or "\0" in name:
        raise RunStoreError(f"invalid run name {shorten(name)}: must be non-empty, without '/' or NUL")


def _is_existing(path: Path, runs_dir: Path) -> bool:
    """Whether ``path`` exists; a ``stat`` failure other than "not there" is a RunStoreError naming ``runs_dir``."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as error:
        where = "" if path == runs_dir else f"cannot access {path}: "
        raise RunStoreError(f"cannot use runs folder {runs_dir}: {where}{describe_os_error(error)}") from None
    return True


def _check_writable_folder(path: Path, runs_dir: Path) -> None:
    """RunStoreError unless ``path`` (``runs_dir`` or its first existing ancestor) is a folder we can write into."""
    where = f"runs folder {runs_dir}" if path == runs_dir else f"cannot create runs folder {runs_dir}: {path}"
    if not path.is_dir():
        raise RunStoreError(f"{where} is a file, not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunStoreError(f"{where} is not writable (permission denied)")


def _check_folder_name_fits(existing: Path, name: str, runs_dir: Path) -> None:
    """RunStoreError if the run folder ``name`` is longer than the file system under ``existing`` allows."""
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(os.fsencode(name)) > limit:
        raise RunStoreError(f"cannot create a run folder in {runs_dir}: name {shorten(name)} is over {limit} bytes")


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
