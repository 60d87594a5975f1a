"""``embedtune export --format onnx``: the graph, its check, and every command that takes a model running it."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer, models

from embedtune.cache.fingerprint import model_fingerprint
from embedtune.cli import main
from embedtune.export import checks
from embedtune.export.onnx_export import ExportCheckError, export_onnx
from embedtune.model_paths import ONNX_MANIFEST_FILE, ModelNotFoundError
from embedtune.models.loading import load_model
from embedtune.models.onnx_backend import ONNX_MODEL_FILE, is_onnx_model
from embedtune.runs import start_run
from embedtune.search.retriever import Retriever
from tests.conftest import write_tiny_beir

TEXTS = ["what color is the apple", "the mango is sweet fruit on a tree", "the bus is fast on the road", "plum"]
PROMPTS = {"query": "what is ", "document": "the "}


def make_run(runs_dir: Path, model: SentenceTransformer, data: Path, name: str = "run") -> Path:
    config = {"train": {"mode": "full"}, "data": {"path": str(data)}}
    folder = start_run(runs_dir, name, config=config, data_hashes={}, command="test")
    model.save(str(folder / "model"))
    return folder


def head_model(tiny_model_dir: Path) -> SentenceTransformer:
    """The tiny encoder plus a Dense head (no Normalize): dot-product similarity, 16 dimensions, with prompts."""
    base = SentenceTransformer(str(tiny_model_dir), device="cpu")
    torch.manual_seed(1)
    dense = models.Dense(base.get_embedding_dimension(), 16, activation_function=torch.nn.Tanh())
    model = SentenceTransformer(modules=[*base, dense], device="cpu", similarity_fn_name="dot", prompts=PROMPTS)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """One run of the tiny model with prompts, exported as fp32 and int8 (the check thresholds met or not)."""
    root = tmp_path_factory.mktemp("onnx")
    data = write_tiny_beir(root / "beir")
    model = SentenceTransformer(str(tiny_model_dir), device="cpu", prompts=PROMPTS)
    run = make_run(root / "runs", model, data)
    fp32 = export_onnx(run, root / "fp32")
    return {"root": root, "run": run, "data": data, "fp32": fp32.path}


def test_fp32_export_matches_pytorch_with_prompts(exported):
    out = exported["fp32"]
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [ONNX_MODEL_FILE, ONNX_MANIFEST_FILE, "tokenizer.json", "tokenizer_config.json"]
    )
    manifest = json.loads((out / ONNX_MANIFEST_FILE).read_text())
    assert manifest["quantization"] == "none" and manifest["check"]["passed"]
    assert manifest["attention"] == "onnxruntime MultiHeadAttention"
    assert manifest["prompts"] == PROMPTS and manifest["dimension"] == 32 and manifest["similarity"] == "cosine"
    assert manifest["inputs"] == ["input_ids", "token_type_ids", "attention_mask"]

    reference = SentenceTransformer(str(exported["run"] / "model"), device="cpu")
    onnx_model = load_model(str(out))
    assert is_onnx_model(onnx_model) and not is_onnx_model(reference)
    for encode in ("encode_query", "encode_document"):
        expected = getattr(reference, encode)(TEXTS, convert_to_tensor=True)
        got = getattr(onnx_model, encode)(TEXTS, convert_to_tensor=True)
        assert torch.allclose(got, expected, atol=1e-5), encode
    # the prompts really apply: without them the embeddings differ
    assert not torch.allclose(onnx_model.encode(TEXTS, convert_to_tensor=True), got, atol=1e-3)


def test_head_model_is_one_graph_with_its_similarity(tiny_model_dir, tmp_path):
    model = head_model(tiny_model_dir)
    run = make_run(tmp_path / "runs", model, write_tiny_beir(tmp_path / "beir"))
    out = export_onnx(run, tmp_path / "head").path
    onnx_model = load_model(str(out))
    assert onnx_model.get_embedding_dimension() == 16 and onnx_model.similarity_fn_name == "dot"
    expected = model.encode_document(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(onnx_model.encode_document(TEXTS, convert_to_numpy=True), expected, atol=1e-5)


def test_int8_export_is_smaller_and_close(exported):
    out = export_onnx(exported["run"], exported["root"] / "int8", quantize="int8").path
    manifest = json.loads((out / ONNX_MANIFEST_FILE).read_text())
    assert manifest["quantization"] == "int8" and manifest["check"]["min_cosine"] == 0.99
    assert manifest["check"]["cosine_mean"] >= 0.99 and manifest["check"]["passed"]
    assert not list(out.glob("*.fp32.onnx"))
    int8_model, fp32_model = load_model(str(out)), load_model(str(exported["fp32"]))
    a = int8_model.encode(TEXTS, convert_to_tensor=True)
    b = fp32_model.encode(TEXTS, convert_to_tensor=True)
    assert not torch.equal(a, b)  # really quantised
    assert float(torch.nn.functional.cosine_similarity(a, b).mean()) >= 0.99
    # the embedding cache keys the two exports apart
    assert model_fingerprint(int8_model) != model_fingerprint(fp32_model)


def test_failed_check_refuses_the_export(exported, monkeypatch):
    monkeypatch.setitem(checks.MIN_COSINE, "none", 1.01)  # no export can reach it
    out = exported["root"] / "refused"
    with pytest.raises(ExportCheckError, match=r"refused: on dev .*mean cosine to PyTorch 1\.0000.*needs >= 1\.01"):
        export_onnx(exported["run"], out)
    assert not out.exists() and not list(exported["root"].glob(".refused*"))


def test_existing_output_and_unreadable_data_fail_before_loading(exported, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="already exists"):
        export_onnx(exported["run"], exported["fp32"])
    model = SentenceTransformer(str(exported["run"] / "model"), device="cpu")
    run = make_run(tmp_path / "runs", model, tmp_path / "missing-beir")
    monkeypatch.setattr(SentenceTransformer, "__init__", _no_model_load)
    assert main(["export", str(run), str(tmp_path / "out"), "--format", "onnx"]) == 2
    assert not (tmp_path / "out").exists()


def test_a_relative_data_path_that_leads_nowhere_from_here_says_where_it_was_recorded(
    exported, tmp_path, monkeypatch, capsys
):
    model = SentenceTransformer(str(exported["run"] / "model"), device="cpu")
    run = make_run(tmp_path / "runs", model, Path("beir"))  # trained from the folder holding beir/
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run), str(tmp_path / "out"), "--format", "onnx"]) == 2
    error = capsys.readouterr().err
    assert "recorded its data as 'beir', relative to the folder it was trained from" in error
    assert len(error.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def _no_model_load(*args, **kwargs):
    raise AssertionError("a model was loaded before the input was checked")


def test_onnx_model_pickles_and_limits_its_length(exported):
    model = load_model(str(exported["fp32"]))
    restored = pickle.loads(pickle.dumps(model))
    assert torch.equal(restored.encode(TEXTS, convert_to_tensor=True), model.encode(TEXTS, convert_to_tensor=True))
    assert load_model(str(exported["fp32"]), max_seq_length=8).max_seq_length == 8
    with pytest.raises(ValueError, match="between 1 and the exported 32"):
        load_model(str(exported["fp32"]), max_seq_length=64)
    with pytest.raises(NotImplementedError, match="export folder"):
        model.save(str(exported["root"] / "resaved"))


def test_backend_must_fit_the_model(exported, tiny_model_dir):
    with pytest.raises(ValueError, match="runs with --backend onnx"):
        load_model(str(exported["fp32"]), backend="torch")
    with pytest.raises(ModelNotFoundError, match="not an ONNX export"):
        load_model(str(tiny_model_dir), backend="onnx")
    with pytest.raises(ValueError, match="runs on the CPU"):
        load_model(str(exported["fp32"]), device="cuda")


def test_index_build_search_and_eval_with_the_export(exported, tmp_path, capsys):
    out, data = exported["fp32"], exported["data"]
    index = tmp_path / "index"
    build = ["index", "build", "--model", str(out), "--corpus", str(data), str(index), "--backend", "onnx"]
    assert main(build) == 0
    assert json.loads((index / "index.json").read_text())["model"]["path"] == str(out.resolve())
    capsys.readouterr()
    assert main(["search", str(index), "sweet mango", "--json", "--top-k", "3"]) == 0
    onnx_hits = [hit["id"] for hit in json.loads(capsys.readouterr().out)["hits"]]
    # the same index searched with the PyTorch run: the fp32 export is the same model
    run_hits = [hit.id for hit in Retriever.load(index, str(exported["run"] / "model")).search("sweet mango", 3)]
    assert onnx_hits == run_hits and len(onnx_hits) == 3
    assert main(["search", str(index), "sweet mango", "--backend", "torch"]) == 2
    assert "runs with --backend onnx" in capsys.readouterr().err

    results = tmp_path / "eval"
    evaluate = ["eval", "--model", str(out), "--baseline", str(exported["run"] / "model"), "--data", f"{data}:test"]
    assert main([*evaluate, "--backend", "onnx", "--out", str(results), "--resamples", "100"]) == 0
    summary = (results / "summary.json").read_text()
    assert str(out) in summary and "baseline" in summary


def test_cli_export_onnx_int8_and_options(exported, tmp_path, capsys):
    run = exported["run"]
    runs = ["--runs-dir", str(run.parent)]
    out = tmp_path / "cli-int8"
    assert main(["export", run.name, str(out), "--format", "onnx", "--quantize", "int8", *runs]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(out) and printed[1].startswith("check passed on dev")
    assert load_model(str(out)).encode(TEXTS).shape == (len(TEXTS), 32)
    assert main(["export", run.name, str(tmp_path / "st"), "--quantize", "int8", *runs]) == 2
    assert "--format onnx only" in capsys.readouterr().err and not (tmp_path / "st").exists()

    traced = tmp_path / "cli-traced"
    assert main(["export", run.name, str(traced), "--format", "onnx", "--attention", "traced", *runs]) == 0
    assert json.loads((traced / ONNX_MANIFEST_FILE).read_text())["attention"] == "traced eager"
    expected = load_model(str(exported["fp32"])).encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(load_model(str(traced)).encode(TEXTS, convert_to_tensor=True), expected, atol=1e-5)
    with pytest.raises(ValueError, match="attention must be one of fused, traced"):
        export_onnx(run, tmp_path / "bad", attention="sdpa")
    with pytest.raises(ValueError, match="quantize must be one of none, int8, got 'int4'"):
        export_onnx(run, tmp_path / "bad", quantize="int4")
    assert not (tmp_path / "bad").exists()


def test_lora_run_needs_merge_for_onnx_too(tiny_model_dir, tmp_path):
    folder = start_run(tmp_path / "runs", "lora", config={"train": {"mode": "lora"}}, data_hashes={}, command="t")
    shutil.copytree(tiny_model_dir, folder / "model")
    (folder / "adapter").mkdir()  # it shipped its adapter
    with pytest.raises(ValueError, match="pass --merge"):
        export_onnx(folder, tmp_path / "out")


def test_batches_run_in_slices_cut_to_their_longest_text(exported, monkeypatch):
    whole = load_model(str(exported["fp32"]))
    whole[0].tokens_per_run = None
    sliced = load_model(str(exported["fp32"]))
    texts = [*TEXTS, "a much longer text about the apple and the mango on the tree by the road", "fig"]
    features = sliced[0].preprocess(texts)
    width = features["input_ids"].shape[1]
    sliced[0].tokens_per_run = 2 * width  # two rows per run
    shapes = []
    session_run = sliced[0].session.run

    def run(names, feeds):
        shapes.append(feeds["input_ids"].shape)
        return session_run(names, feeds)

    monkeypatch.setattr(sliced[0], "session", SimpleNamespace(run=run))
    expected = whole(dict(features))["sentence_embedding"]
    actual = sliced(dict(features))["sentence_embedding"]
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    lengths = features["attention_mask"].sum(1).tolist()
    assert shapes == [(len(part), max(part)) for part in (lengths[0:2], lengths[2:4], lengths[4:6])]
    assert max(lengths) == width > min(max(part) for part in (lengths[0:2], lengths[2:4]))
