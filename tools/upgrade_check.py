"""Install other versions than the lock's into a throwaway environment, run the tests, print what broke (not CI).

``--newest`` (``make upgrade-check``): the newest releases that pyproject.toml's bounds allow, ignoring
``tools/lock-constraints.txt`` — the question is whether the lock's pins can be lifted. ``--lowest``
(``make bounds-check``): every direct dependency at its lower bound (``name>=X`` installed as ``name==X``), the
question being whether the lower bounds are true. torch stays at the lock's CPU build in both (``--torch``): the only
CPU build this machine's registries carry.

It prints the versions that differ from the lock, then the tests that failed, and exits with pytest's code (0 when
nothing broke). The environment is removed afterwards unless ``--keep``.

Usage: ``python tools/upgrade_check.py --newest|--lowest [--tests PATH ...] [--keep]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from embedtune.versions import read_lock  # noqa: E402
from lock import project_requirements, torch_pin  # noqa: E402

FAST_TESTS = ["tests", "--ignore=tests/integration", "-m", "not lock"]
"""The tests an upgrade check runs: all but the end-to-end integration tests and those that expect the lock."""


def lower_bound_pins(requirements: list[str]) -> list[str]:
    """Return ``name==X`` for each requirement with a ``>=X`` lower bound (torch excepted: it stays at the lock's)."""
    pins = []
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*.*?>=\s*([\w.]+)", requirement)
        if match and match.group(1).lower() != "torch":
            pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


def installed_versions(python: Path) -> dict[str, str]:
    """Return ``{canonical name: version}`` of what ``pip list`` shows in the environment of ``python``."""
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout
    return {
        canonicalize_name(name): version
        for name, _, version in (line.partition("==") for line in listing.splitlines())
    }


def build_environment(folder: Path, mode: str, torch_spec: str) -> Path:
    """Create a venv in ``folder`` with embedtune installed at the ``mode``'s versions; return its Python.

    Raises:
        subprocess.CalledProcessError: if an install fails (the resolver's message is printed above it).
    """
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    # Only PyPI, plus the folder with torch's CPU wheel: no local mirror, no machine-wide constraint.
    env = {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_FIND_LINKS": os.environ.get("TORCH_WHEELS", "/opt/wheels"),
    }
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--require-hashes", "-r", str(ROOT / "tools" / "pip.txt")], check=True, env=env)
    subprocess.run([*pip, torch_spec], check=True, env=env)
    if mode == "newest":
        upgrade = ["--upgrade", "--upgrade-strategy", "eager"]
        subprocess.run([*pip, *upgrade, torch_spec, "-e", f"{ROOT}[dev,mlflow,onnx]"], check=True, env=env)
    else:
        pins = lower_bound_pins(project_requirements(build=False))
        print("lower bounds installed:", " ".join(pins), flush=True)
        subprocess.run([*pip, torch_spec, *pins, "-e", f"{ROOT}[dev,mlflow,onnx]"], check=True, env=env)
    return python


def print_differences(python: Path) -> None:
    """Print the packages whose installed version differs from the lock's."""
    installed, locked = installed_versions(python), read_lock(ROOT / "pylock.toml")
    changed = [
        f"  {name}: {locked[name]} -> {installed[name]}"
        for name in sorted(locked)
        if name in installed and installed[name] != locked[name]
    ]
    print("versions that differ from pylock.toml:" if changed else "every version equals pylock.toml's")
    print("\n".join(changed))


def run_tests(python: Path, tests: list[str]) -> int:
    """Run pytest in the environment; print the failures' summary; return pytest's exit code."""
    command = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *tests]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = completed.stdout.splitlines()
    summary = [line for line in lines if line.startswith(("FAILED", "ERROR"))] + lines[-1:]
    print("\n".join(summary))
    if completed.returncode not in (0, 1):
        print(completed.stdout[-3000:] + completed.stderr[-3000:])
    return completed.returncode


def main() -> int:
    """Build the environment, compare it with the lock, run the tests; return pytest's exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--newest", action="store_const", const="newest", dest="mode")
    which.add_argument("--lowest", action="store_const", const="lowest", dest="mode")
    parser.add_argument("--torch", default=f"torch=={torch_pin()}", help="torch requirement (default: the lock's).")
    parser.add_argument("--tests", nargs="+", default=FAST_TESTS, help="pytest arguments (default: all but slow).")
    parser.add_argument("--keep", action="store_true", help="Keep the environment and print its path.")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix=f"embedtune-{args.mode}-"))
    try:
        python = build_environment(folder / "venv", args.mode, args.torch)
        print_differences(python)
        code = run_tests(python, args.tests)
        print(f"{args.mode} versions: {'nothing broke' if code == 0 else 'tests failed (above)'}")
        return code
    except subprocess.CalledProcessError as error:
        print(f"{args.mode} versions: the install failed ({' '.join(map(str, error.cmd[:6]))} ...)")
        return 2
    finally:
        if args.keep:
            print(f"environment kept: {folder / 'venv'}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
