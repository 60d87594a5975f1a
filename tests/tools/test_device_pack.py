"""tools/device_pack.py decides which packages a lent GPU call carries; a wrong decision costs a GPU session.

The pack itself (wheels, model, data) is only built by hand before a GPU call; this checks the decision on the
packages installed here: the version-sensitive ones are carried at the lock's versions, the image's own are not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.versions import read_lock

TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture
def device_pack(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    import device_pack  # tools/device_pack.py

    return device_pack


def test_the_closure_follows_requirements_and_their_markers(device_pack):
    closure = device_pack.dependency_closure(["transformers"], device_pack.target_environment("3.12"))
    assert {"transformers", "huggingface-hub", "tokenizers", "safetensors"} <= closure
    assert "tomli" not in closure  # huggingface-hub needs it only below Python 3.11


def test_a_requirement_not_installed_here_stops_the_tool(device_pack):
    with pytest.raises(SystemExit, match="not installed"):
        device_pack.dependency_closure(["surely-no-such-package-here"], device_pack.target_environment("3.12"))


def test_carried_packages_are_the_locks_versions_minus_the_images_own(device_pack):
    locked = read_lock(TOOLS.parent / "pylock.toml")
    needs = ["transformers", "peft", "sentence-transformers", "optuna", "faiss-cpu"]
    closure = device_pack.dependency_closure(needs, device_pack.target_environment("3.12"))
    pins = device_pack.packages_to_carry(closure, locked)
    carried = {pin.split("==")[0]: pin.split("==")[1] for pin in pins}
    assert {"transformers", "peft", "sentence-transformers", "huggingface-hub", "optuna"} <= set(carried)
    assert all(carried[name] == locked[name] for name in carried)
    assert not set(carried) & (device_pack.ON_IMAGE | set(device_pack.NOT_CARRIED))
    assert "torch" in closure and "faiss-cpu" in closure


def test_a_package_missing_from_the_lock_stops_the_tool(device_pack):
    with pytest.raises(SystemExit, match="not in pylock.toml: brand-new"):
        device_pack.packages_to_carry({"brand-new", "torch"}, {"torch": "2.13.0"})
