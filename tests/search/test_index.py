import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from embedtune.cli import main
from embedtune.errors import DataError
from embedtune.search import index as index_module
from embedtune.search.corpus import load_search_corpus
from embedtune.search.index import IndexFileError, build_index, load_index
from embedtune.search.retriever import Retriever
from embedtune.search.vectors import EXACT_MAX_DOCS, create_vector_index, resolve_kind, search_vectors

CORPUS = {
    "d0": "the apple is a sweet red fruit",
    "d1": "the bus is fast on the road",
    "d2": "a lemon tastes sour",
    "d3": "the river runs to the sea",
    "d4": "mango juice is yellow and sweet",
    "d5": "the plane flies over the mountain",
    "café-é": "green pear on the tree",
    "d7": "which car has the best engine",
}
QUERIES = ["sweet fruit", "fast car on the road", "green tree"]


@pytest.fixture()
def model(tiny_model_dir):
    return SentenceTransformer(str(tiny_model_dir), device="cpu")


def unit_vectors(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def recall_at_10(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found, strict=True)]))


def hit_rows(hits):
    return [[(hit.id, round(hit.score, 5), hit.text) for hit in row] for row in hits]


# --- building, saving, loading -------------------------------------------------------------------------------------


def test_build_and_load_round_trip_gives_the_same_results(model, tiny_model_dir, tmp_path):
    built = build_index(str(tiny_model_dir), CORPUS, tmp_path / "idx", progress=False)
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "ids.json",
        "index.faiss",
        "index.json",
        "texts.jsonl",
    ]
    record = json.loads((tmp_path / "idx" / "index.json").read_text(encoding="utf-8"))
    assert record["model"]["reference"] == str(tiny_model_dir)
    assert record["model"]["path"] == str(Path(tiny_model_dir).resolve())
    assert (record["dimension"], record["similarity"], record["kind"], record["count"]) == (32, "cosine", "exact", 8)
    assert record["prompts"] == {"query": "", "document": ""}
    assert record["embedtune_version"] and datetime.fromisoformat(record["created"]).tzinfo is not None
    texts = (tmp_path / "idx" / "texts.jsonl").read_text(encoding="utf-8")
    assert '"café-é"' in texts and "\\u" not in texts  # UTF-8, never ASCII-escaped
    assert json.loads((tmp_path / "idx" / "ids.json").read_text(encoding="utf-8")) == list(CORPUS)
    assert type(built.vectors).__name__ == "IndexFlatIP"

    in_memory = Retriever(model, progress=False).index(CORPUS).batch_search(QUERIES, top_k=4)
    loaded = load_index(tmp_path / "idx")
    assert loaded.ids == list(CORPUS) and loaded.texts == list(CORPUS.values()) and loaded.info == built.info
    from_disk = Retriever.load(tmp_path / "idx", progress=False).batch_search(QUERIES, top_k=4)
    assert hit_rows(from_disk) == hit_rows(in_memory)


def test_scores_follow_the_models_similarity(model, tmp_path):
    model.similarity_fn_name = "dot"
    retriever = Retriever(model, progress=False).index(CORPUS)
    hits = retriever.search("sweet fruit", top_k=len(CORPUS))
    query = model.encode_query(["sweet fruit"])
    docs = model.encode_document(list(CORPUS.values()))
    expected = dict(zip(CORPUS, (docs @ query.T).ravel(), strict=True))
    assert {hit.id: hit.score for hit in hits} == pytest.approx(expected, rel=1e-4)
    assert retriever.save(tmp_path / "dot").exists()
    assert load_index(tmp_path / "dot").info.similarity == "dot"


def test_refuses_to_overwrite_an_existing_folder(model, tmp_path):
    out = tmp_path / "idx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        build_index(model, CORPUS, out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileExistsError):
        build_index(model, CORPUS, tmp_path / "empty")
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "idx"]


def test_a_failed_write_leaves_no_folder_behind(model, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(index_module, "write_lines_atomic", broken)
    with pytest.raises(OSError, match="No space"):
        build_index(model, CORPUS, tmp_path / "idx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("damage", "named_file", "message"),
    [
        (lambda d: (d / "ids.json").unlink(), "ids.json", "file not found"),
        (lambda d: (d / "index.faiss").write_bytes(b"garbage"), "index.faiss", "not a readable faiss index"),
        (lambda d: (d / "index.faiss").unlink(), "index.faiss", "file not found"),
        (lambda d: (d / "index.json").write_text("{not json"), "index.json", "malformed JSON"),
        (lambda d: (d / "index.json").unlink(), "index.json", "file not found"),
        (lambda d: (d / "ids.json").write_text('["d0", "d1"]'), "ids.json", "holds 2 ids"),
        (lambda d: (d / "texts.jsonl").write_text('{"id": "x", "text": "t"}\n'), "texts.jsonl:1", "field 'id'"),
        (lambda d: _edit_info(d, count=99), "ids.json", "records 99 documents"),
        (lambda d: _edit_info(d, dimension=16), "index.faiss", "dimension 32, index.json records 16"),
        (lambda d: _edit_info(d, kind="magic"), "index.json", "field 'kind'"),
        (lambda d: _edit_info(d, format_version=7), "index.json", "needs a newer embedtune"),
    ],
)
def test_missing_or_corrupt_files_name_the_file(model, tmp_path, damage, named_file, message):
    out = tmp_path / "idx"
    build_index(model, CORPUS, out)
    damage(out)
    with pytest.raises(IndexFileError) as caught:
        load_index(out)
    assert str(out / named_file) in str(caught.value) and message in str(caught.value)


def _edit_info(folder: Path, **changes) -> None:
    record = json.loads((folder / "index.json").read_text())
    record.update(changes)
    (folder / "index.json").write_text(json.dumps(record))


def test_a_missing_index_folder_is_named(tmp_path):
    with pytest.raises(IndexFileError, match="index folder not found"):
        load_index(tmp_path / "nowhere")


# --- vector indexes, without a model ---------------------------------------------------------------------------


def test_hnsw_agrees_with_exact_search_on_random_unit_vectors():
    rng = np.random.default_rng(0)
    documents, queries = unit_vectors(rng, 2000, 32), unit_vectors(rng, 100, 32)
    exact, exact_settings = create_vector_index(documents, "exact")
    hnsw, hnsw_settings = create_vector_index(documents, "hnsw")
    assert exact_settings == {"kind": "exact"} and hnsw_settings["kind"] == "hnsw" and hnsw_settings["m"] == 32
    truth_scores, truth = search_vectors(exact, queries, 10)
    np.testing.assert_allclose(truth_scores, np.sort(queries @ documents.T, axis=1)[:, ::-1][:, :10], atol=1e-5)
    _, found = search_vectors(hnsw, queries, 10)
    assert recall_at_10(truth, found) >= 0.9


def test_ivf_visiting_every_cell_is_exact():
    rng = np.random.default_rng(1)
    documents, queries = unit_vectors(rng, 2000, 16), unit_vectors(rng, 50, 16)
    _, truth = search_vectors(create_vector_index(documents, "exact")[0], queries, 10)
    ivf, settings = create_vector_index(documents, "ivf", nlist=20, nprobe=20)
    assert settings == {"kind": "ivf", "nlist": 20, "nprobe": 20}
    assert recall_at_10(truth, search_vectors(ivf, queries, 10)[1]) == 1.0


def test_auto_is_exact_up_to_the_threshold_then_hnsw(monkeypatch):
    assert resolve_kind("auto", EXACT_MAX_DOCS) == "exact"
    assert resolve_kind("auto", EXACT_MAX_DOCS + 1) == "hnsw"
    assert resolve_kind("ivf", 10) == "ivf"
    with pytest.raises(ValueError, match="unknown index kind"):
        resolve_kind("annoy", 10)
    monkeypatch.setattr("embedtune.search.vectors.EXACT_MAX_DOCS", 100)
    rng = np.random.default_rng(2)
    assert create_vector_index(unit_vectors(rng, 100, 8))[1]["kind"] == "exact"
    assert type(create_vector_index(unit_vectors(rng, 101, 8))[0]).__name__ == "IndexHNSWFlat"


def test_euclidean_scores_are_minus_the_distance():
    rng = np.random.default_rng(3)
    documents = rng.standard_normal((50, 4)).astype(np.float32)
    queries = rng.standard_normal((3, 4)).astype(np.float32)
    scores, positions = search_vectors(create_vector_index(documents, "exact", "euclidean")[0], queries, 5)
    distances = np.linalg.norm(queries[:, None, :] - documents[None, :, :], axis=2)
    np.testing.assert_array_equal(positions, np.argsort(distances, axis=1)[:, :5])
    np.testing.assert_allclose(scores, -np.sort(distances, axis=1)[:, :5], atol=1e-4)
    with pytest.raises(ValueError, match="manhattan"):
        create_vector_index(documents, "exact", "manhattan")


# --- corpus files ----------------------------------------------------------------------------------------------


def test_corpus_files_in_every_accepted_format(tmp_path, tiny_beir):
    beir = load_search_corpus(tiny_beir)
    assert beir["d0"] == "apple the apple is sweet fruit on a tree" and len(beir) == 14
    assert load_search_corpus(tiny_beir / "corpus.jsonl") == beir
    plain = tmp_path / "docs.jsonl"
    plain.write_text('{"id": "a", "text": "über café", "lang": "de"}\n\n{"id": "b", "text": "x"}\n', encoding="utf-8")
    assert load_search_corpus(plain) == {"a": "über café", "b": "x"}


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ('{"id": "a", "text": "x"}\n{"text": "y"}\n', ":2: field 'id': missing required field"),
        ('{"id": 7, "text": "x"}\n', ":1: field 'id': expected a string, got number"),
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', ":2: field 'id': duplicate id 'a'"),
        ('{"id": "a", "text": "  "}\n', ":1: field 'text': empty text"),
        ('{"id": "a"}\n', ":1: field 'text': missing required field"),
        ('{"id": "a", "text": "x"}\n{"id": "b", "text": \n', ":2: malformed JSON"),
        ('{"_id": "a", "title": "t"}\n', ":1: field 'text': missing required field"),
        ('{"doc": "a", "text": "x"}\n', ":1: field 'id': missing required field"),
        ('["a", "b"]\n', ":1: expected a JSON object"),
        ("\n\n", ": no documents"),
    ],
)
def test_corpus_validation_errors_name_file_line_and_field(tmp_path, content, where):
    path = tmp_path / "corpus.jsonl"
    path.write_text(content)
    with pytest.raises(DataError) as caught:
        load_search_corpus(path)
    assert str(caught.value).startswith(f"{path}{where}")


def test_a_folder_without_a_corpus_is_refused(tmp_path):
    with pytest.raises(DataError, match="no corpus.jsonl"):
        load_search_corpus(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_search_corpus(tmp_path / "missing.jsonl")


# --- command line ----------------------------------------------------------------------------------------------


def write_corpus(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in CORPUS.items()))
    return path


def test_cli_index_build_then_search_json(tiny_model_dir, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "docs.jsonl")
    out = tmp_path / "idx"
    assert main(["index", "build", "--model", str(tiny_model_dir), "--corpus", str(corpus), str(out)]) == 0
    assert "indexed 8 documents" in capsys.readouterr().out
    assert main(["search", str(out), CORPUS["d3"], "--top-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == CORPUS["d3"] and [hit["rank"] for hit in result["hits"]] == [1, 2, 3]
    assert result["hits"][0]["id"] == "d3" and result["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert result["hits"][0]["text"] == CORPUS["d3"]
    assert main(["search", str(out), "green tree", "--top-k", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and lines[0].split()[0] == "1" and float(lines[0].split()[1]) >= float(lines[1].split()[1])


def test_cli_accepts_a_run_and_a_beir_folder(tiny_model_dir, tiny_beir, tmp_path, capsys):
    run = tmp_path / "runs" / "20240501-103000-fruit"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    shutil.copytree(tiny_model_dir, run / "model")
    out = tmp_path / "idx"
    args = ["index", "build", "--model", "fruit", "--runs-dir", str(tmp_path / "runs"), "--corpus", str(tiny_beir)]
    assert main([*args, "--kind", "hnsw", str(out)]) == 0
    record = json.loads((out / "index.json").read_text())
    assert record["model"]["reference"] == "fruit" and record["model"]["path"] == str((run / "model").resolve())
    assert (record["kind"], record["count"], record["parameters"]["m"]) == ("hnsw", 14, 32)
    capsys.readouterr()
    query = "apple the apple is sweet fruit on a tree"
    assert main(["search", str(out), query, "--json", "--top-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == "d0"
    assert main(["search", str(out), query, "--model", "fruit", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.split()[2] == "d0"


def test_cli_validates_the_corpus_before_loading_the_model(tmp_path, capsys):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": 3}\n')
    code = main(["index", "build", "--model", "no/such/model", "--corpus", str(corpus), str(tmp_path / "idx")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: {corpus}:2: field 'text': expected a string, got number"
    assert not (tmp_path / "idx").exists()


def test_cli_errors_are_one_line(tiny_model_dir, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "docs.jsonl")
    (tmp_path / "taken").mkdir()
    build = ["index", "build", "--model", str(tiny_model_dir), "--corpus", str(corpus)]
    assert main([*build, str(tmp_path / "taken")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "nowhere"), "query"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nowhere'}: index folder not found"
    assert main([*build, "--kind", "x", str(tmp_path / "other")]) == 2
