"""Seen vs unseen queries: which reported queries have a relevant document that was a training positive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.data.types import EvalSplit, TrainingExample
from embedtune.evaluation.seen_unseen import (
    memorisation_verdict,
    seen_queries,
    split_comparison,
    training_positives,
)
from embedtune.training.pipeline import run_training
from tests.training.test_pipeline import tiny_config


def split_of(qrels: dict[str, dict[str, int]], corpus: dict[str, str]) -> EvalSplit:
    return EvalSplit("test", corpus, {qid: f"query {qid}" for qid in qrels}, qrels, "test.tsv")


def test_a_query_is_seen_by_a_relevant_document_id_or_text_that_was_a_training_positive() -> None:
    examples = [
        TrainingExample(query="a", pos=("text of d1",), pos_ids=("d1",)),
        TrainingExample(query="b", pos=("  the   same text\nas d2 ",)),  # a training file without ids
    ]
    corpus = {"d1": "text of d1", "d2": "the same text as d2", "d3": "new", "d4": "text of d1 but longer"}
    qrels = {
        "by_id": {"d1": 1},
        "by_text": {"d2": 2, "d3": 1},
        "unseen": {"d3": 1, "d4": 1},
        "judged_irrelevant": {"d1": 0, "d3": 1},  # a judgement of 0 is not a relevant document
    }
    assert seen_queries(split_of(qrels, corpus), training_positives(examples)) == {"by_id", "by_text"}


def per_query(values: dict[str, float]) -> dict[str, dict[str, float]]:
    return {qid: {"ndcg@10": value} for qid, value in values.items()}


def test_split_comparison_tests_each_group_and_names_memorisation() -> None:
    seen = {f"s{i}" for i in range(40)}
    base = per_query({**{qid: 0.2 for qid in seen}, **{f"u{i}": 0.5 for i in range(40)}})
    # Seen queries gain 0.3 each; unseen ones move by ±0.01 alternately: no gain.
    tuned = per_query({**{qid: 0.5 for qid in seen}, **{f"u{i}": 0.5 + (0.01 if i % 2 else -0.01) for i in range(40)}})

    record = split_comparison(base, tuned, seen | {"not-reported"}, "ndcg@10")

    assert record["seen"]["queries"] == 40 and record["seen"]["mean_diff"] == pytest.approx(0.3)
    assert record["seen"]["significant"] and record["seen"]["wins"] == 40
    assert record["unseen"]["queries"] == 40 and abs(record["unseen"]["mean_diff"]) < 1e-9
    assert not record["unseen"]["significant"]
    assert record["seen_queries"] == sorted(seen)  # only reported queries
    assert record["verdict"].startswith("seen (40 queries) Δ +0.3000")
    assert "learned which documents are relevant, not (measurably) how to match new ones" in record["verdict"]


def test_verdicts_for_a_gain_on_unseen_queries_for_no_gain_and_for_an_empty_group() -> None:
    base = per_query({f"q{i}": 0.2 for i in range(30)})
    tuned = per_query({f"q{i}": 0.6 for i in range(30)})
    both = split_comparison(base, tuned, {f"q{i}" for i in range(15)}, "ndcg@10")
    assert "reaches queries whose relevant documents were never trained on" in both["verdict"]

    flat = split_comparison(base, base, {f"q{i}" for i in range(15)}, "ndcg@10")
    assert flat["verdict"].endswith("no significant gain on either group")

    none_seen = split_comparison(base, tuned, set(), "ndcg@10")
    assert none_seen["seen"] is None and none_seen["unseen"]["queries"] == 30
    assert memorisation_verdict(none_seen).startswith("seen: no queries; unseen (30 queries) Δ +0.4000")
    assert none_seen["verdict"].endswith("every reported query is unseen; a significant gain")
    all_seen = split_comparison(base, base, {f"q{i}" for i in range(30)}, "ndcg@10")
    assert all_seen["unseen"] is None and all_seen["verdict"].endswith(
        "every reported query is seen; no significant gain"
    )


def write_shared_document_beir(folder: Path) -> Path:
    """Train and test queries that share relevant documents (seen), and test queries on documents never trained."""
    words = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum"]
    docs = [{"_id": f"d{i}", "text": f"the {word} is sweet fruit"} for i, word in enumerate(words)]
    queries = [{"_id": f"q{i}", "text": f"what color is the {words[i % 10]}"} for i in range(14)]
    queries += [{"_id": f"t{i}", "text": f"which {words[i]} grows on a tree"} for i in range(10)]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    train = "".join(f"q{i}\td{i % 6}\t1\n" for i in range(14))  # documents d0-d5 are training positives
    test = "".join(f"t{i}\td{i}\t1\n" for i in range(10))  # t0-t5 seen, t6-t9 unseen
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + train)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + test)
    return folder


def test_a_run_reports_seen_and_unseen_queries_everywhere(tiny_model_dir, tmp_path, capsys) -> None:
    from embedtune.cli import main

    beir = write_shared_document_beir(tmp_path / "beir")
    runs_dir = tmp_path / "runs"
    args = ["train", "--data", str(beir), "--model", str(tiny_model_dir), "--runs-dir", str(runs_dir), "--name", "x"]
    assert main([*args, "--max-steps", "2", "--batch-size", "4", "--set", "data.dev_fraction=0.25"]) == 0

    (folder,) = runs_dir.iterdir()
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    per_query = json.loads((folder / "per_query.json").read_text(encoding="utf-8"))
    record = metrics["seen_unseen"]
    assert per_query["seen"] == record["seen_queries"] == [f"t{i}" for i in range(6)]
    assert record["seen"]["queries"] == 6 and record["unseen"]["queries"] == 4
    for group, ids in (("seen", range(6)), ("unseen", range(6, 10))):
        deltas = [per_query["fine_tuned"][f"t{i}"]["ndcg@10"] - per_query["base"][f"t{i}"]["ndcg@10"] for i in ids]
        assert record[group]["mean_diff"] == pytest.approx(sum(deltas) / len(deltas), abs=1e-9)
    assert f"Seen/unseen: {record['verdict']}" in capsys.readouterr().out
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert (
        "## Seen vs unseen queries (ndcg@10)" in report
        and f"**Seen vs unseen queries:** {record['verdict']}" in report
    )
    assert (folder / "figures" / "seen_unseen.png").is_file()


def test_runs_without_shared_documents_call_every_query_unseen(tiny_model_dir, tiny_beir, tmp_path) -> None:
    result = run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", "train.max_steps=1"))
    record = result.metrics.seen_unseen
    assert record["seen"] is None and record["seen_queries"] == []
    assert record["unseen"]["queries"] == len(json.loads((result.folder / "per_query.json").read_text())["base"])
