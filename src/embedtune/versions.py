"""The installed libraries that matter to embedtune: their versions, whether they can work together, and the lock.

Three checks, each read from what is installed rather than from a table kept here:

- :func:`peft_problem`: transformers states the oldest peft it accepts (``MIN_PEFT_VERSION`` in
  ``transformers.integrations.peft``) and refuses an older one when an adapter is added. A LoRA run checks this
  before any model loads (:func:`check_lora_libraries`), so the user gets one line naming both versions and the fix.
- :func:`bound_problems`: the installed versions against embedtune's own declared requirements (``pyproject.toml``,
  read back from the installed package's metadata).
- :func:`lock_status`: the installed versions against a ``pylock.toml`` lock file (PEP 751) of the source checkout.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from embedtune.errors import ConfigError

EMBEDTUNE_VERSION = "0.1.0"
"""This package's version, ``embedtune.__version__`` (equal to pyproject.toml's ``version``; a test checks)."""

KEY_LIBRARIES = ("torch", "transformers", "sentence-transformers", "peft", "datasets", "accelerate")
"""The libraries whose versions decide whether a run works, in the order they are printed."""

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The source checkout's root when embedtune is installed from one (``pip install -e .``)."""

LOCK_FILES = ("pylock.toml", "pylock.cuda.toml")
"""The lock files of a checkout: the default (CPU torch) and the CUDA variant (``make test TORCH=cuda``)."""

INSTALL_FROM_LOCK = "install the locked versions (make test, or pip install -r pylock.toml in a source checkout)"


def installed_version(name: str) -> str | None:
    """Return the installed version of the distribution ``name`` (e.g. ``"sentence-transformers"``), or ``None``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def key_versions() -> dict[str, str | None]:
    """Return ``{name: version or None}`` for embedtune and :data:`KEY_LIBRARIES`, in that order."""
    return {name: installed_version(name) for name in ("embedtune", *KEY_LIBRARIES)}


def version_line() -> str:
    """One line for ``embedtune --version``: embedtune's version, then Python's and the key libraries'."""
    versions = key_versions()
    libraries = ", ".join(f"{name} {versions[name] or 'not installed'}" for name in KEY_LIBRARIES)
    return f"embedtune {versions['embedtune']} (Python {platform.python_version()}; {libraries})"


def peft_problem(transformers_min_peft: str | None = None, peft_version: str | None = None) -> str | None:
    """Say why the installed transformers cannot add LoRA adapters with the installed peft, or ``None`` if it can.

    Args:
        transformers_min_peft: The oldest peft that transformers accepts; read from
            ``transformers.integrations.peft.MIN_PEFT_VERSION`` when ``None``.
        peft_version: The installed peft version; read from the installed distribution when ``None``.

    Returns:
        One line naming both versions and the fix, or ``None`` when the pair works (or transformers states no
        minimum).
    """
    transformers_version = installed_version("transformers")
    if transformers_min_peft is None:
        transformers_min_peft = _transformers_min_peft()
    if peft_version is None:
        peft_version = installed_version("peft")
    if peft_version is None:
        return f"LoRA needs peft, which is not installed: {INSTALL_FROM_LOCK}"
    if transformers_min_peft is None or Version(peft_version) >= Version(transformers_min_peft):
        return None
    return (
        f"transformers {transformers_version} needs peft >= {transformers_min_peft} for LoRA, but peft {peft_version} "
        f"is installed: {INSTALL_FROM_LOCK}{_locked_pair_hint()}"
    )


def check_lora_libraries() -> None:
    """Raise ``ConfigError`` (exit code 2, before any model loads) when transformers and peft cannot add LoRA.

    Raises:
        embedtune.config.ConfigError: naming the setting ``train.mode``, both versions and the fix.
    """
    problem = peft_problem()
    if problem is not None:
        raise ConfigError(f"train.mode: lora cannot run here: {problem}")


def bound_problems(requirements: list[str] | None = None) -> list[str]:
    """Return one line per declared requirement of embedtune that the installed version does not meet.

    Args:
        requirements: Requirement strings (``"transformers>=5.23,<6"``); embedtune's own from its installed metadata
            when ``None``. Requirements behind an extra (``extra == "dev"``) or a marker that does not apply are
            skipped.

    Returns:
        Lines such as ``"transformers 5.2.0 is outside embedtune's bound >=5.23,<6"`` or ``"peft is not installed"``;
        empty when every bound holds.
    """
    if requirements is None:
        requirements = declared_requirements()
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        version = installed_version(requirement.name)
        if version is None:
            problems.append(f"{requirement.name} is not installed")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name} {version} is outside embedtune's bound {requirement.specifier}")
    return problems


def declared_requirements() -> list[str]:
    """Return embedtune's requirement strings: from the installed package's metadata, else the checkout's pyproject.

    Raises:
        ValueError: if embedtune is neither installed nor run from a checkout with a readable ``pyproject.toml``.
    """
    try:
        return importlib.metadata.requires("embedtune") or []
    except importlib.metadata.PackageNotFoundError:  # imported from src/ without an install (PYTHONPATH)
        pass
    try:
        # tomllib: standard library from Python 3.11 only
        import tomllib

        project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    except (ImportError, OSError, KeyError, ValueError) as error:
        raise ValueError(f"embedtune is not installed and {PROJECT_ROOT / 'pyproject.toml'} cannot be read") from error
    extras = project.get("optional-dependencies", {})
    return [
        *project["dependencies"],
        *(f'{req}; extra == "{extra}"' for extra, reqs in extras.items() for req in reqs),
    ]


@dataclass(frozen=True)
class LockStatus:
    """How the installed packages compare with one lock file.

    Attributes:
        path: The lock file.
        packages: Packages the lock pins (with a version).
        mismatches: One line per locked package whose installed version differs (or that is missing).
    """

    path: Path
    packages: int
    mismatches: tuple[str, ...]

    @property
    def satisfied(self) -> bool:
        """Whether every locked package is installed at its locked version."""
        return not self.mismatches


def read_lock(path: Path) -> dict[str, str]:
    """Return ``{canonical name: version}`` of the packages a PEP 751 ``pylock.toml`` pins (``[[packages]]``).

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it is not valid TOML (the message names the file), or Python < 3.11 (no ``tomllib``).
    """
    try:
        # tomllib: standard library from Python 3.11 only
        import tomllib
    except ImportError as error:  # Python 3.10
        raise ValueError(f"{path}: reading a lock file needs Python >= 3.11") from error
    try:
        lock = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not a valid lock file: {error}") from error
    return {
        canonicalize_name(package["name"]): package["version"]
        for package in lock.get("packages", [])
        if "version" in package
    }


def compare_with_lock(path: Path) -> LockStatus:
    """Compare the installed distributions with the lock file ``path`` (local version labels such as ``+cpu`` count).

    Raises:
        OSError, ValueError: as :func:`read_lock`.
    """
    locked = read_lock(path)
    mismatches = []
    for name, version in sorted(locked.items()):
        installed = installed_version(name)
        if installed is None:
            mismatches.append(f"{name} is not installed (locked {version})")
        elif _version(installed) != _version(version):
            mismatches.append(f"{name} {installed} installed, locked {version}")
    return LockStatus(path=path, packages=len(locked), mismatches=tuple(mismatches))


def lock_status(root: Path | None = None) -> list[LockStatus]:
    """Compare the installed packages with each lock file of the checkout at ``root`` (default: this checkout).

    Returns:
        One :class:`LockStatus` per lock file found (none outside a source checkout).

    Raises:
        OSError, ValueError: as :func:`read_lock`.
    """
    root = PROJECT_ROOT if root is None else root
    return [compare_with_lock(root / name) for name in LOCK_FILES if (root / name).is_file()]


def python_description() -> str:
    """Return e.g. ``"CPython 3.11.7 on Linux x86_64"``."""
    system = f"{platform.system()} {platform.machine()}"
    return f"{platform.python_implementation()} {platform.python_version()} on {system}"


def running_from_checkout() -> bool:
    """Whether this embedtune is imported from a source checkout (its ``pyproject.toml`` beside ``src/``)."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and Path(__file__).resolve().is_relative_to(PROJECT_ROOT)


def _transformers_min_peft() -> str | None:
    try:
        # transformers: only when checking which peft it accepts
        from transformers.integrations import peft as transformers_peft
    except ImportError:
        return None
    return getattr(transformers_peft, "MIN_PEFT_VERSION", None)


def _locked_pair_hint() -> str:
    """`` (the lock has transformers X with peft Y)`` when a lock file of the checkout can be read, else ``""``."""
    for status_path in (PROJECT_ROOT / name for name in LOCK_FILES):
        try:
            locked = read_lock(status_path)
        except (OSError, ValueError):
            continue
        if "transformers" in locked and "peft" in locked:
            return f" (the lock has transformers {locked['transformers']} with peft {locked['peft']})"
    return ""


def _version(text: str) -> Version | str:
    """Parse ``text`` for comparison; unparsable text is kept as it is (equal only to itself)."""
    try:
        return Version(text)
    except InvalidVersion:
        return text
