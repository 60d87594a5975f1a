from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.cli import main
from embedtune.data.training_file import load_triplets

MISSING_MODEL = "/nonexistent/model-folder"


def mine_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["mine", str(data), str(out), *extra]


def qrels_positives(folder: Path, split: str = "train") -> dict[str, set[str]]:
    positives: dict[str, set[str]] = {}
    for line in (folder / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            positives.setdefault(query_id, set()).add(doc_id)
    return positives


def write_word_beir(folder: Path) -> Path:
    """A BEIR folder whose documents share words with the queries, so that BM25 finds candidates too."""
    words = ["apple", "banana", "cherry", "grape", "lemon", "mango"]
    colors = ["red", "green", "yellow", "blue"]
    docs = [
        {"_id": f"d{i}-{j}", "text": f"{fruit} {color} sweet fruit"}
        for i, fruit in enumerate(words)
        for j, color in enumerate(colors)
    ]
    docs += [{"_id": f"v{i}", "text": f"{color} car on the road"} for i, color in enumerate(colors)]
    queries = [{"_id": f"q{i}", "text": f"which {fruit} is red"} for i, fruit in enumerate(words)]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    rows = "".join(f"q{i}\td{i}-0\t1\nq{i}\td{i}-1\t1\n" for i in range(len(words)))  # two positives each
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def test_mine_dense_end_to_end(tiny_model_dir, tiny_beir, tmp_path, capsys, isolated_embedding_cache) -> None:
    out = tmp_path / "mined.jsonl"
    window = ["--range-min", "1", "--range-max", "8", "--num-negatives", "3"]

    assert main(mine_args(tiny_beir, out, "--model", str(tiny_model_dir), *window)) == 0

    printed = capsys.readouterr().out
    assert "mined 10 queries" in printed and "14 documents, dense, exact search" in printed
    assert "3.00 per query" in printed and "10 positives" in printed and "peak memory" in printed
    examples = load_triplets(out)
    positives = qrels_positives(tiny_beir)
    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (tiny_beir / "queries.jsonl").open()}
    assert [example.query_id for example in examples] == [f"q{i}" for i in range(10)]
    for example in examples:
        assert set(example.pos_ids) == positives[example.query_id]
        assert not set(example.neg_ids) & set(example.pos_ids)
        assert example.query == queries[example.query_id] and example.query not in example.neg
        assert len(example.neg) == len(example.neg_ids) == len(example.neg_scores) == 3
        assert list(example.neg_scores) == sorted(example.neg_scores, reverse=True)
        assert example.neg_sources == ()
    assert "neg_weights" not in out.read_text()
    assert any(isolated_embedding_cache.rglob("*")), "corpus and query embeddings go through the cache"

    first = out.read_bytes()
    assert main(mine_args(tiny_beir, out, "--model", str(tiny_model_dir), *window, "--overwrite")) == 0
    assert out.read_bytes() == first  # deterministic (the second run reads the cache)


def test_mined_file_trains_with_the_beir_folder(tiny_model_dir, tiny_beir, tmp_path) -> None:
    from embedtune.config import DataConfig
    from embedtune.data.prepare import prepare_data

    out = tmp_path / "mined.jsonl"
    assert main(mine_args(tiny_beir, out, "--model", str(tiny_model_dir), "--range-min", "0", "--range-max", "5")) == 0

    prepared = prepare_data(DataConfig(path=str(tiny_beir), train_file=str(out)))

    assert prepared.train_examples and all(example.neg for example in prepared.train_examples)
    assert all(example.pos_ids for example in prepared.train_examples)


def test_mine_both_with_weights(tiny_model_dir, tmp_path, capsys) -> None:
    beir = write_word_beir(tmp_path / "beir")
    out = tmp_path / "mined.jsonl"
    settings = ["--retriever", "both", "--range-min", "0", "--range-max", "6", "--num-negatives", "4", "--weights"]

    assert main(mine_args(beir, out, "--model", str(tiny_model_dir), *settings, "--no-cache")) == 0

    assert "both, exact search" in capsys.readouterr().out
    examples = load_triplets(out)
    assert len(examples) == 6
    sources = [tuple(s) for example in examples for s in example.neg_sources]
    assert sources and set(sources) <= {("dense",), ("bm25",), ("dense", "bm25")}
    assert ("bm25",) in sources or ("dense", "bm25") in sources
    for example in examples:
        assert len(example.pos_ids) == 2 and not set(example.neg_ids) & set(example.pos_ids)
        assert len(example.neg_sources) == len(example.neg) == len(example.neg_weights) == 4
        assert all(0.5 <= weight <= 2.0 for weight in example.neg_weights)


def test_mine_bm25_loads_no_model(tmp_path, capsys) -> None:
    beir = write_word_beir(tmp_path / "beir")
    out = tmp_path / "mined.jsonl"

    args = mine_args(beir, out, "--retriever", "bm25", "--model", MISSING_MODEL, "--range-min", "0")
    assert main([*args, "--range-max", "5", "--num-negatives", "2"]) == 0

    assert "documents, bm25" in capsys.readouterr().out
    for example in load_triplets(out):
        assert len(example.neg) == 2 and all(score > 0 for score in example.neg_scores)
        assert all(example.query.split()[1] in text or "red" in text for text in example.neg)  # a shared word


def test_mine_training_file_with_a_corpus(tiny_model_dir, tiny_beir, tmp_path) -> None:
    train = tmp_path / "train.jsonl"
    records = [
        {"query": "which fruit is yellow", "pos": ["lemon the lemon is sweet fruit on a tree"], "phase": "easy"},
        {"query": "what is fast", "pos": ["a fast train"], "query_id": "fast"},
    ]
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "mined.jsonl"
    window = ["--range-min", "0", "--range-max", "4", "--num-negatives", "2", "--sampling", "random", "--seed", "3"]

    assert main(mine_args(train, out, "--corpus", str(tiny_beir), "--model", str(tiny_model_dir), *window)) == 0

    first, second = load_triplets(out)
    assert (first.query_id, first.pos_ids, first.phase) == ("record1", ("d4",), "easy")
    assert (second.query_id, second.pos_ids) == ("fast", ("p0",))  # not in the corpus: added under a fresh id
    assert len(first.neg) == len(second.neg) == 2 and "d4" not in first.neg_ids


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--range-min", "5", "--range-max", "5"], "--range-max: must exceed --range-min (5), got 5"),
        (["--num-negatives", "0"], "--num-negatives: must be a positive integer"),
        (["--range-min", "0", "--range-max", "3", "--num-negatives", "4"], "--num-negatives: 4 do not fit"),
        (["--margin", "nan"], "--margin: must be a finite number"),
        (["--batch-size", "0"], "--batch-size: must be a positive integer"),
        (["--corpus", "corpus.jsonl"], "--corpus: only for a training JSONL file"),
        (["--split", "dev"], "qrels/dev.tsv: file not found"),
    ],
)
def test_bad_settings_fail_before_the_model_loads(tiny_beir, tmp_path, capsys, extra, fragment) -> None:
    out = tmp_path / "mined.jsonl"

    assert main(mine_args(tiny_beir, out, "--model", MISSING_MODEL, *extra)) == 2

    error = capsys.readouterr().err
    assert fragment in error and MISSING_MODEL not in error
    assert not out.exists()


def test_bad_data_names_file_line_and_field(tiny_beir, tmp_path, capsys) -> None:
    queries = tiny_beir / "queries.jsonl"
    lines = queries.read_text().splitlines()
    lines[1] = json.dumps({"_id": "q1", "text": ""})
    queries.write_text("\n".join(lines) + "\n")

    assert main(mine_args(tiny_beir, tmp_path / "out.jsonl", "--model", MISSING_MODEL)) == 2

    assert f"{queries}:2: field 'text': empty text" in capsys.readouterr().err


def test_bad_training_file_and_split_option(tmp_path, capsys) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text('{"query": "q", "pos": ["a"], "pos_scores": ["high"]}\n')

    assert main(mine_args(train, tmp_path / "out.jsonl", "--model", MISSING_MODEL)) == 2
    assert f"{train}:1: field 'pos_scores[0]': expected a number" in capsys.readouterr().err

    assert main(mine_args(train, tmp_path / "out.jsonl", "--split", "train")) == 2
    assert "--split: only for a BEIR folder" in capsys.readouterr().err


def test_out_is_never_overwritten_by_accident(tiny_beir, tmp_path, capsys) -> None:
    out = tmp_path / "mined.jsonl"
    out.write_text("keep me\n")

    assert main(mine_args(tiny_beir, out, "--model", MISSING_MODEL)) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"

    assert main(mine_args(tiny_beir, tmp_path / "no" / "such" / "out.jsonl", "--model", MISSING_MODEL)) == 2
    assert "folder not found" in capsys.readouterr().err


def test_mine_help_and_cli_constants_mirror_the_library(capsys) -> None:
    from embedtune.cli import mine as cli
    from embedtune.mining import mine as mining
    from embedtune.search import top_k

    assert main(["mine", "--help"]) == 0
    assert "usage: embedtune mine" in capsys.readouterr().out
    assert (cli.RETRIEVERS, cli.SAMPLING_STRATEGIES) == (mining.RETRIEVERS, mining.SAMPLING_STRATEGIES)
    assert (cli.SEARCH_KINDS, cli.EXACT_MAX_DOCS) == (top_k.SEARCH_KINDS, top_k.EXACT_MAX_DOCS)
    assert (cli.DEFAULT_CHUNK_SIZE, cli.WEIGHT_MIN, cli.WEIGHT_MAX) == (
        top_k.DEFAULT_CHUNK_SIZE,
        mining.WEIGHT_MIN,
        mining.WEIGHT_MAX,
    )
    defaults = mining.MiningSettings()
    parsed = cli.argparse.ArgumentParser()
    cli.add_mine_command(parsed.add_subparsers())
    args = parsed.parse_args(["mine", "data", "out"])
    assert (args.range_min, args.range_max, args.num_negatives) == (
        defaults.range_min,
        defaults.range_max,
        defaults.num_negatives,
    )
    assert (args.seed, args.chunk_size, args.query_batch_size, args.weight_alpha) == (
        defaults.seed,
        defaults.chunk_size,
        defaults.query_batch_size,
        defaults.weight_alpha,
    )


def test_mine_features_from_sources_prices_negatives_by_retriever(tiny_model_dir, tmp_path, capsys) -> None:
    from embedtune.data.feature_weights import load_feature_weights
    from embedtune.errors import DataError

    beir = write_word_beir(tmp_path / "beir")
    out = tmp_path / "mined.jsonl"
    settings = ["--retriever", "both", "--range-min", "0", "--range-max", "6", "--num-negatives", "4"]

    assert main(mine_args(beir, out, "--model", str(tiny_model_dir), *settings, "--features-from-sources")) == 0

    assert "both, exact search" in capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 6 and all("neg_weights" not in record for record in records)
    for record in records:
        assert record["neg_features"] == record["neg_sources"] and len(record["neg_features"]) == len(record["neg"])
    found = {tuple(sources) for record in records for sources in record["neg_sources"]}
    assert found == {("dense",), ("bm25",), ("dense", "bm25")}  # every kind occurs, so every weight is checked

    # A weight config naming the two retrievers turns the features into weights when the file is read back.
    config = tmp_path / "weights.yaml"
    config.write_text("features:\n  dense: 3.0\n  bm25: 0.5\ndefault: 1.0\ncombine: sum\n", encoding="utf-8")
    expected = {("dense",): 3.0, ("bm25",): 0.5, ("dense", "bm25"): 3.5}
    examples = load_triplets(out, load_feature_weights(config))
    for example, record in zip(examples, records, strict=True):
        assert list(example.neg) == record["neg"]
        assert [tuple(sources) for sources in example.neg_sources] == [tuple(s) for s in record["neg_sources"]]
        assert list(example.neg_weights) == [expected[tuple(sources)] for sources in record["neg_features"]]
    with pytest.raises(DataError, match="neg_features needs a weight config"):
        load_triplets(out)  # never silently read as unweighted


def test_features_from_sources_keeps_queries_left_without_negatives(tiny_model_dir, tmp_path) -> None:
    from embedtune.data.feature_weights import FeatureWeights

    beir = write_word_beir(tmp_path / "beir")
    out = tmp_path / "mined.jsonl"
    # Every candidate of the random tiny model scores within 50 % of the best positive: all are set aside.
    settings = ["--retriever", "both", "--range-min", "0", "--range-max", "6", "--relative-margin", "0.5"]

    assert main(mine_args(beir, out, "--model", str(tiny_model_dir), *settings, "--features-from-sources")) == 0

    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 6 and all(record["neg"] == record["neg_features"] == [] for record in records)
    examples = load_triplets(out, FeatureWeights({"dense": 2.0, "bm25": 1.0}))
    assert all(example.neg == example.neg_weights == () for example in examples)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "needs --retriever both, got dense"),  # the default retriever
        (["--retriever", "dense"], "needs --retriever both, got dense"),
        (["--retriever", "bm25"], "needs --retriever both, got bm25"),
        (["--retriever", "both", "--weights"], "not both: drop --weights"),
        (["--weights", "--retriever", "both"], "not both: drop --weights"),
    ],
)
def test_features_from_sources_is_refused_before_any_model_loads(tmp_path, capsys, extra, message) -> None:
    beir = write_word_beir(tmp_path / "beir")
    out = tmp_path / "mined.jsonl"

    code = main(mine_args(beir, out, "--model", MISSING_MODEL, "--features-from-sources", *extra))

    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("error: --features-from-sources: ") and message in error
    assert len(error.splitlines()) == 1 and MISSING_MODEL not in error  # the settings fail first, not the model
    assert not out.exists()


def test_mine_says_why_most_queries_kept_no_negative(tmp_path, capsys) -> None:
    beir = write_word_beir(tmp_path / "beir")
    window = ["--range-min", "0", "--range-max", "5", "--num-negatives", "2"]

    assert main(mine_args(beir, tmp_path / "capped.jsonl", "--retriever", "bm25", *window, "--max-score", "0")) == 0
    printed = capsys.readouterr().out
    assert "100% of queries kept no negative" in printed and "--model" in printed

    assert main(mine_args(beir, tmp_path / "open.jsonl", "--retriever", "bm25", *window)) == 0
    assert "kept no negative" not in capsys.readouterr().out
