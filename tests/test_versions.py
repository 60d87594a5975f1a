"""Library versions: the transformers/peft guard, embedtune's bounds, the lock comparison, doctor and --version."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from embedtune import versions
from embedtune.cli import main
from embedtune.config import ConfigError


@pytest.fixture
def peft_too_old_for_transformers(monkeypatch: pytest.MonkeyPatch) -> str:
    """Fake an incompatible pair: this transformers demands a peft newer than the installed one."""
    from transformers.integrations import peft as transformers_peft

    monkeypatch.setattr(transformers_peft, "MIN_PEFT_VERSION", "99.0.0", raising=False)
    return "99.0.0"


def test_installed_pair_is_compatible() -> None:
    assert versions.peft_problem() is None


def test_peft_problem_names_both_versions_and_the_fix() -> None:
    problem = versions.peft_problem(transformers_min_peft="0.22.0", peft_version="0.21.2")
    transformers_version = importlib.metadata.version("transformers")
    assert (
        f"transformers {transformers_version} needs peft >= 0.22.0 for LoRA, but peft 0.21.2 is installed" in problem
    )
    assert "pip install -r pylock.toml" in problem
    assert versions.peft_problem(transformers_min_peft="0.22.0", peft_version="0.22.0") is None


def test_a_transformers_that_states_no_peft_minimum_passes(monkeypatch) -> None:
    from transformers.integrations import peft as transformers_peft

    monkeypatch.delattr(transformers_peft, "MIN_PEFT_VERSION", raising=False)
    assert versions.peft_problem(peft_version="0.1.0") is None


def test_lora_guard_raises_a_config_error(peft_too_old_for_transformers) -> None:
    with pytest.raises(ConfigError, match=r"train.mode: lora cannot run here: .*needs peft >= 99.0.0"):
        versions.check_lora_libraries()


@pytest.mark.parametrize("check", [False, True])
def test_lora_train_stops_before_any_model_or_run_folder(
    peft_too_old_for_transformers, tiny_beir, tmp_path, capsys, check
):
    runs_dir = tmp_path / "runs"
    args = ["train", "--data", str(tiny_beir), "--model", str(tmp_path / "no-such-model"), "--runs-dir", str(runs_dir)]
    code = main([*args, "--set", "train.mode=lora", *(["--check"] if check else [])])

    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    installed_peft = importlib.metadata.version("peft")
    assert f"needs peft >= 99.0.0 for LoRA, but peft {installed_peft} is installed" in error
    assert "no-such-model" not in error  # the versions fail first, before the model is looked up
    assert not runs_dir.exists()


def test_full_mode_is_not_stopped_by_the_peft_pair(peft_too_old_for_transformers, tiny_beir) -> None:
    from embedtune.config import build_config
    from embedtune.training.mode import check_mode_libraries

    check_mode_libraries(
        build_config(None, [f"data.path={tiny_beir}", "train.mode=full"])
    )  # nothing raised: full mode needs no peft


def test_bound_problems_reads_requirements_and_skips_extras() -> None:
    installed = importlib.metadata.version("transformers")
    problems = versions.bound_problems(
        ["transformers>=0.1", "transformers<0.1", "no-such-package-xyz>=1", 'ruff>=99; extra == "dev"']
    )
    assert problems == [
        f"transformers {installed} is outside embedtune's bound <0.1",
        "no-such-package-xyz is not installed",
    ]


@pytest.mark.lock
def test_the_installed_set_meets_embedtunes_declared_bounds() -> None:
    assert versions.bound_problems() == []


def write_lock(path: Path, packages: dict[str, str]) -> Path:
    entries = "".join(
        f'\n[[packages]]\nname = "{name}"\nversion = "{version}"\n' for name, version in packages.items()
    )
    path.write_text(f'lock-version = "1.0"\ncreated-by = "test"\n{entries}', encoding="utf-8")
    return path


def test_compare_with_lock_lists_every_mismatch(tmp_path) -> None:
    torch_version = importlib.metadata.version("torch")
    good = write_lock(
        tmp_path / "pylock.toml", {"torch": torch_version, "PyYAML": importlib.metadata.version("pyyaml")}
    )
    status = versions.compare_with_lock(good)
    assert status.satisfied and status.packages == 2

    bad = write_lock(tmp_path / "pylock.cuda.toml", {"torch": "0.0.1", "no-such-package-xyz": "1.0"})
    status = versions.compare_with_lock(bad)
    assert not status.satisfied
    assert status.mismatches == (
        "no-such-package-xyz is not installed (locked 1.0)",
        f"torch {torch_version} installed, locked 0.0.1",
    )


def test_unreadable_lock_is_one_clear_error(tmp_path) -> None:
    broken = tmp_path / "pylock.toml"
    broken.write_text("[[packages]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pylock.toml: not a valid lock file"):
        versions.read_lock(broken)


@pytest.mark.lock
def test_checkout_lock_is_what_is_installed() -> None:
    """The checkout's pylock.toml (or its CUDA variant) is the installed set: `make test` installs from it."""
    statuses = versions.lock_status()
    assert [status.path.name for status in statuses] == ["pylock.toml", "pylock.cuda.toml"]
    assert any(status.satisfied for status in statuses), [status.mismatches[:5] for status in statuses]


@pytest.mark.lock
def test_doctor_reports_versions_device_and_lock(capsys) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "transformers", "sentence-transformers", "peft"):
        assert f"\n{name}: {importlib.metadata.version(name)}\n" in out
    assert "\ndevice: c" in out and "\nbf16: " in out and "train.precision auto = " in out
    assert "LoRA (transformers + peft): ok" in out and "dependency bounds: all met" in out
    assert "\nlock: pylock" in out and " satisfied (" in out and "problem:" not in out


def test_doctor_fails_on_an_incompatible_pair_and_an_unmet_lock(
    peft_too_old_for_transformers, monkeypatch, tmp_path, capsys
):
    write_lock(tmp_path / "pylock.toml", {"torch": "0.0.1"})
    monkeypatch.setattr(versions, "PROJECT_ROOT", tmp_path)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "LoRA (transformers + peft): cannot run" in out
    assert "problem: transformers " in out and "needs peft >= 99.0.0" in out
    assert "lock: not satisfied (1 differ from pylock.toml)" in out
    assert "problem: installed packages differ from pylock.toml (1): torch " in out


def test_declared_requirements_come_from_the_metadata_or_the_checkout(monkeypatch) -> None:
    installed = versions.declared_requirements()
    assert any(req.startswith("transformers") for req in installed)

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "requires", not_installed)
    from_checkout = versions.declared_requirements()

    def parsed(requirements):
        return {str(Requirement(req)) for req in requirements}

    assert parsed(from_checkout) == parsed(installed)  # the same requirements, as the metadata normalises them


def test_version_flag_prints_the_key_versions(capsys) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"embedtune {importlib.metadata.version('embedtune')} (Python ")
    assert f"peft {importlib.metadata.version('peft')}" in out and len(out.splitlines()) == 1
