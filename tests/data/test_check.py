"""Tests of embedtune.data.check: planted problems are reported with the right counts, clean data gives none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.data.check import BEIR, PAIRS, TRAINING, check_path
from embedtune.data.check_stats import MAX_EXAMPLES, label_distribution, length_stats
from embedtune.data.check_tokens import load_token_counter, whitespace_counter
from embedtune.errors import DataError
from tests.conftest import write_tiny_beir

LONG_DOC = " ".join(f"word{i}" for i in range(30))  # 30 whitespace tokens
LIMIT = 20  # --max-seq-length used with the whitespace counter: only LONG_DOC exceeds it


def write_jsonl(path: Path, records: list[dict | None]) -> Path:
    """Write records one a line; ``None`` writes a blank line (skipped by the loaders, still counted in numbering)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\n" if r is None else json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_qrels(folder: Path, split: str, rows: list[tuple[str, str, int]]) -> None:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{s}" for q, d, s in rows)]
    (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_problem_beir(folder: Path) -> Path:
    """A BEIR folder with one of each planted problem (see the comments)."""
    corpus = [
        {"_id": "d1", "title": "", "text": "The apple is red"},
        {"_id": "d2", "title": "", "text": "the  APPLE is red"},  # same text as d1 once normalised
        {"_id": "d3", "title": "", "text": "the banana is yellow"},
        {"_id": "d4", "title": "", "text": "the cherry is dark"},
        {"_id": "d5", "title": "", "text": LONG_DOC},  # longer than LIMIT
        {"_id": "d6", "title": "", "text": "the lemon is sour"},
    ]
    queries = [
        {"_id": "q1", "text": "which fruit is red"},  # judged in train and in test
        {"_id": "q2", "text": "which fruit is yellow"},  # train ...
        {"_id": "q3", "text": "Which fruit is  YELLOW"},  # ... and the same text in test under another id
        {"_id": "q4", "text": "which fruit is dark"},  # test, judged non-relevant only
        {"_id": "q5", "text": "which fruit is sour"},  # judged in no split
        {"_id": "q6", "text": "which fruit is long"},
    ]
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    write_qrels(folder, "train", [("q1", "d1", 1), ("q2", "d3", 1), ("q6", "d5", 1), ("q6", "d6", 2)])
    write_qrels(folder, "test", [("q1", "d2", 1), ("q3", "d3", 1), ("q4", "d4", 0)])
    return folder


def by_code(report) -> dict:
    return {warning.code: warning for warning in report.warnings}


def test_planted_beir_problems_are_each_reported_once(tmp_path):
    report = check_path(write_problem_beir(tmp_path / "beir"), model="whitespace", max_seq_length=LIMIT)
    warnings = by_code(report)
    assert report.kind == BEIR
    assert {code: w.count for code, w in warnings.items()} == {
        "duplicate_documents": 1,
        "duplicate_queries": 1,
        "query_id_in_several_splits": 1,
        "query_text_in_several_splits": 1,
        "queries_without_relevant": 1,
        "unjudged_queries": 1,
        "long_documents": 1,
    }
    assert warnings["duplicate_documents"].examples[0].startswith("d1, d2:")
    assert warnings["duplicate_queries"].examples[0].startswith("q2, q3:")
    assert warnings["query_id_in_several_splits"].examples == ("q1: test, train",)  # splits in file-name order
    assert warnings["query_text_in_several_splits"].examples[0].startswith("q3 (test), q2 (train):")
    assert warnings["queries_without_relevant"].examples == ("q4 (test)",)
    assert warnings["unjudged_queries"].examples == ("q5",)
    assert warnings["long_documents"].examples == ("d5: 30 tokens",)


def test_beir_counts_follow_the_qrels(tmp_path):
    report = check_path(write_problem_beir(tmp_path / "beir"), model="whitespace", max_seq_length=LIMIT)
    counts = report.counts
    assert (counts["documents"], counts["queries"], counts["judged_queries"], counts["unjudged_queries"]) == (
        6,
        6,
        5,
        1,
    )
    train, test = counts["splits"]["train"], counts["splits"]["test"]
    assert (train["judged_queries"], train["judgements"], train["relevant_judgements"]) == (3, 4, 4)
    assert train["relevant_per_query"] == {"mean": round(4 / 3, 2), "min": 1, "max": 2}
    assert (test["judged_queries"], test["judgements"], test["relevant_judgements"]) == (3, 3, 2)
    assert test["queries_without_relevant"] == 1
    documents = report.lengths["documents"]
    assert (documents.texts, documents.max, documents.truncated) == (6, 30, 1)
    assert report.lengths["queries"].max == 4 and report.lengths["queries"].truncated == 0


def test_clean_beir_folder_has_no_warnings(tmp_path):
    report = check_path(write_tiny_beir(tmp_path / "beir"), model="whitespace", max_seq_length=LIMIT)
    assert report.warnings == []
    assert report.counts["documents"] == 14 and report.counts["unjudged_queries"] == 0


def test_whitespace_counter_counts_words_and_knows_no_limit(tmp_path):
    counter = load_token_counter("whitespace")
    assert counter.count(["a  b\tc\n d", "one"]) == [4, 1]
    assert counter.max_seq_length is None
    report = check_path(write_problem_beir(tmp_path / "beir"), model="whitespace")
    assert report.max_seq_length is None and report.lengths["documents"].truncated is None
    assert "long_documents" not in by_code(report)


def test_examples_are_capped_but_the_count_is_complete(tmp_path):
    folder = tmp_path / "beir"
    corpus = [{"_id": f"d{i}", "text": f"{LONG_DOC} {i}"} for i in range(MAX_EXAMPLES + 3)]
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", [{"_id": "q", "text": "a query"}])
    write_qrels(folder, "test", [("q", "d0", 1)])
    warning = by_code(check_path(folder, model="whitespace", max_seq_length=LIMIT))["long_documents"]
    assert warning.count == MAX_EXAMPLES + 3 and len(warning.examples) == MAX_EXAMPLES


def training_records() -> list[dict | None]:
    return [
        # neg[1] equals pos[0]; d4 is judged in test, but non-relevant (score 0): no leak
        {
            "query": "what is dark",
            "pos": ["The cherry is dark"],
            "neg": ["the banana is yellow", "the cherry IS dark"],
        },
        {"query": "What is  dark", "pos": ["the cherry is dark"]},  # repeats line 1's (query, positive)
        None,
        {"query": "which fruit is yellow", "pos": ["the banana is yellow"], "phase": "easy"},  # test query q3, doc d3
        {"query": "long one", "pos": [LONG_DOC], "neg": ["x y"], "neg_weights": [2.0], "phase": "hard"},
    ]


def test_planted_training_problems_are_reported_with_line_numbers(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", training_records())
    beir = write_problem_beir(tmp_path / "beir")
    report = check_path(path, model="whitespace", beir=beir, max_seq_length=LIMIT)
    warnings = by_code(report)
    assert report.kind == TRAINING
    assert {code: w.count for code, w in warnings.items()} == {
        "duplicate_queries": 1,
        "duplicate_positive_pairs": 1,
        "negative_is_positive": 1,
        "query_in_held_out": 1,
        "positive_in_held_out": 1,
        "long_documents": 1,
    }
    assert warnings["negative_is_positive"].examples[0].startswith("line 1: neg[1] = pos[0]")
    assert warnings["duplicate_positive_pairs"].examples[0].startswith("line 2 pos[0] repeats line 1 pos[0]")
    assert warnings["query_in_held_out"].examples[0].startswith("line 4:")
    assert warnings["query_in_held_out"].examples[0].endswith("q3 (test)")
    assert warnings["long_documents"].examples == ("line 5 pos[0]: 30 tokens",)
    assert report.counts["compared_with"]["held_out_splits"] == "test"


def test_training_counts(tmp_path):
    report = check_path(write_jsonl(tmp_path / "train.jsonl", training_records()), model="whitespace")
    counts = report.counts
    assert counts["records"] == 4 and counts["distinct_queries"] == 3  # lines 1 and 2 differ only in case/spaces
    assert counts["positives_per_record"] == {"mean": 1.0, "min": 1, "max": 1}
    assert counts["negatives_per_record"] == {"mean": 0.75, "min": 0, "max": 2}
    assert counts["records_with_negatives"] == 2 and counts["records_with_weights"] == 1
    assert counts["phases"] == {"(none)": 2, "easy": 1, "hard": 1}
    assert "compared_with" not in counts
    # lengths are measured once per exact text: 3 spellings of the cherry text, banana, LONG_DOC, "x y"
    assert report.lengths["documents"].texts == 6 and report.lengths["queries"].texts == 4


def test_training_ids_reveal_documents_shared_under_two_ids(tmp_path):
    records = [
        {"query": "q one", "pos": ["same text"], "pos_ids": ["a"], "neg": ["other"], "neg_ids": ["b"]},
        {"query": "q two", "pos": ["Same  text"], "pos_ids": ["c"]},
    ]
    report = check_path(write_jsonl(tmp_path / "ids.jsonl", records), model="whitespace")
    assert by_code(report)["duplicate_documents"].examples[0].startswith("a, c:")
    assert report.counts["records_with_ids"] == 2


def test_clean_training_file_has_no_warnings(tmp_path):
    records = [{"query": f"query {i}", "pos": [f"positive {i}"], "neg": [f"negative {i}"]} for i in range(4)]
    report = check_path(write_jsonl(tmp_path / "clean.jsonl", records), model="whitespace", max_seq_length=LIMIT)
    assert report.warnings == []
    assert report.counts["records_with_weights"] == 0 and "phases" not in report.counts


def test_planted_pair_problems(tmp_path):
    pairs = [
        {"text1": "what is red", "text2": "the apple is red", "label": 1},  # d2's text, relevant to test q1
        {"text1": "what is red", "text2": "The apple is red", "label": 0},  # repeat, other label, not a positive
        {"text1": "which fruit is yellow", "text2": "the banana is yellow", "label": 1, "phase": "p1"},  # q3, d3
        {"text1": "same text", "text2": "Same text", "label": 0.5},
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    report = check_path(path, model="whitespace", beir=write_problem_beir(tmp_path / "b"))
    warnings = by_code(report)
    assert report.kind == PAIRS
    assert {code: w.count for code, w in warnings.items()} == {
        "duplicate_pairs": 1,
        "conflicting_labels": 1,
        "pair_of_equal_texts": 1,
        "query_in_held_out": 1,
        "positive_in_held_out": 2,
    }
    assert warnings["conflicting_labels"].examples == ("line 1: labels 0, 1",)
    assert report.counts["labels"] == {"0": 1, "0.5": 1, "1": 2}
    assert report.counts["queries_without_relevant"] == 0
    assert report.counts["phases"] == {"(none)": 3, "p1": 1}


def test_graded_labels_become_a_histogram():
    labels = [index / 20 for index in range(21)]  # 21 distinct values in [0, 1]
    histogram = label_distribution(labels)
    assert list(histogram) == ["[0.0, 0.2)", "[0.2, 0.4)", "[0.4, 0.6)", "[0.6, 0.8)", "[0.8, 1.0]"]
    assert sum(histogram.values()) == len(labels)
    assert histogram["[0.8, 1.0]"] == sum(1 for label in labels if label >= 0.8)


def test_length_stats_percentiles_and_truncation():
    stats = length_stats(list(range(1, 101)), max_seq_length=90)
    assert (stats.texts, stats.mean, stats.median, stats.max, stats.truncated) == (100, 50.5, 50.5, 100, 10)
    assert stats.p95 == pytest.approx(95.05)
    assert length_stats([3], None).truncated is None
    with pytest.raises(ValueError):
        length_stats([], None)


@pytest.mark.parametrize(
    ("name", "line", "field"),
    [("train.jsonl", 2, "pos"), ("pairs.jsonl", 2, "label")],
)
def test_invalid_files_raise_the_loaders_data_error(tmp_path, name, line, field):
    if name == "train.jsonl":
        records = [{"query": "q", "pos": ["p"]}, {"query": "q2", "pos": "not a list"}]
    else:
        records = [{"text1": "a", "text2": "b", "label": 1}, {"text1": "a", "text2": "c", "label": 2}]
    path = write_jsonl(tmp_path / name, records)
    with pytest.raises(DataError) as error:
        check_path(path, model="whitespace")
    assert (error.value.path, error.value.line, error.value.field) == (path, line, field)


def test_beir_option_is_refused_for_a_beir_folder(tmp_path):
    folder = write_tiny_beir(tmp_path / "beir")
    with pytest.raises(ValueError, match="--beir"):
        check_path(folder, model="whitespace", beir=folder)


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        check_path(tmp_path / "nothing", model="whitespace")


def test_minilm_tokenizer_offline_counts_special_tokens_and_reads_max_seq_length(tmp_path):
    counter = load_token_counter("all-MiniLM-L6-v2")
    assert counter.max_seq_length == 256  # sentence_bert_config.json of the packaged model
    assert counter.count(["hello world"]) == [4]  # [CLS] hello world [SEP]
    folder = tmp_path / "beir"
    write_jsonl(folder / "corpus.jsonl", [{"_id": "long", "text": "apple " * 300}, {"_id": "short", "text": "pear"}])
    write_jsonl(folder / "queries.jsonl", [{"_id": "q", "text": "fruit"}])
    write_qrels(folder, "test", [("q", "short", 1)])
    report = check_path(folder)
    assert report.tokenizer == "all-MiniLM-L6-v2" and report.max_seq_length == 256
    assert by_code(report)["long_documents"].examples == ("long: 302 tokens",)
    assert report.lengths["documents"].truncated == 1


def test_sentence_transformers_folder_limit_comes_from_its_config(tiny_model_dir):
    counter = load_token_counter(str(tiny_model_dir))
    assert counter.max_seq_length == 32  # conftest saves the tiny model with max_seq_length=32
    assert load_token_counter(str(tiny_model_dir), max_seq_length=8).max_seq_length == 8
    with pytest.raises(ValueError):
        load_token_counter("whitespace", max_seq_length=0)
    assert whitespace_counter(5).max_seq_length == 5


def test_neg_features_need_the_feature_weights_config(tmp_path):
    records = [{"query": "q", "pos": ["p"], "neg": ["n1", "n2"], "neg_features": [["price"], []]}]
    path = write_jsonl(tmp_path / "features.jsonl", records)
    with pytest.raises(DataError) as error:
        check_path(path, model="whitespace")
    assert (error.value.line, error.value.field) == (1, "neg_features")
    config = tmp_path / "weights.json"
    config.write_text(json.dumps({"features": {"price": 2.0}}), encoding="utf-8")
    report = check_path(path, model="whitespace", feature_weights=config)
    assert report.counts["records_with_weights"] == 1 and report.warnings == []
