from embedtune.data.prepare import (
    carve_dev_from_examples,
    drop_held_out_queries,
    examples_from_qrels,
)
from embedtune.data.types import RetrievalSet, TrainingExample
from embedtune.training.dataset import build_train_dataset


def test_train_dataset_pads_missing_negatives_with_zero_weight():
    examples = [
        TrainingExample("q1", ("p1", "p1b"), ("n1", "n2"), (2.0, 0.5)),
        TrainingExample("q2", ("p2",), ("m1",), (3.0,)),
        TrainingExample("q3", ("p3",)),
    ]
    dataset = build_train_dataset(examples, max_hard_negatives=2)
    assert dataset.column_names == ["anchor", "positive", "negative_1", "negative_2", "label"]
    assert dataset["anchor"] == ["q1", "q1", "q2", "q3"]
    assert dataset["positive"] == ["p1", "p1b", "p2", "p3"]
    assert dataset["negative_1"] == ["n1", "n1", "m1", "p3"]
    assert dataset["negative_2"] == ["n2", "n2", "p2", "p3"]
    assert dataset["label"] == [[2.0, 0.5], [2.0, 0.5], [3.0, 0.0], [0.0, 0.0]]


def test_train_dataset_without_negatives_has_pairs_only():
    dataset = build_train_dataset([TrainingExample("q", ("p",), ("n",))], max_hard_negatives=0)
    assert dataset.column_names == ["anchor", "positive"]


def test_examples_from_qrels_keep_only_relevant_documents():
    retrieval_set = RetrievalSet(
        corpus={"d1": "doc one", "d2": "doc two"},
        queries={"q1": "query one", "q2": "query two"},
        qrels={"train": {"q1": {"d1": 1, "d2": 0}, "q2": {"d2": 0}}},
    )
    assert examples_from_qrels(retrieval_set, "train") == [TrainingExample("query one", ("doc one",))]


def test_training_examples_that_are_dev_or_test_queries_are_dropped():
    retrieval_set = RetrievalSet(
        corpus={"d": "doc"},
        queries={"a": "train query", "b": "dev query", "c": "test query"},
        qrels={"train": {"a": {"d": 1}}, "dev": {"b": {"d": 1}}, "test": {"c": {"d": 1}}},
    )
    examples = [TrainingExample(text, ("doc",)) for text in ("train query", "dev query", "test query", "new")]
    assert [e.query for e in drop_held_out_queries(examples, retrieval_set)] == ["train query", "new"]


def test_dev_carved_from_examples_shares_no_query_with_train():
    examples = [TrainingExample(f"query {i}", (f"pos {i}",), (f"neg {i}",)) for i in range(20)]
    train, retrieval_set = carve_dev_from_examples(examples, dev_fraction=0.25, seed=1)
    dev_queries = {retrieval_set.queries[qid] for qid in retrieval_set.qrels["dev"]}
    assert len(dev_queries) == 5 and len(train) == 15
    assert dev_queries.isdisjoint(e.query for e in train)
    assert len(retrieval_set.corpus) == 40
    for qid, judgements in retrieval_set.qrels["dev"].items():
        (doc_id,) = judgements
        assert retrieval_set.corpus[doc_id] == retrieval_set.queries[qid].replace("query", "pos")


def test_missing_explicit_eval_split_is_an_error_and_missing_test_falls_back_to_dev(tmp_path):
    import pytest

    from embedtune.config import DataConfig
    from embedtune.data.beir import write_beir
    from embedtune.data.prepare import prepare_data

    retrieval_set = RetrievalSet(
        corpus={f"d{i}": f"doc {i}" for i in range(10)},
        queries={f"q{i}": f"query {i}" for i in range(10)},
        qrels={"train": {f"q{i}": {f"d{i}": 1} for i in range(10)}},
    )
    folder = write_beir(retrieval_set, tmp_path / "beir")
    with pytest.raises(ValueError, match="data.eval_split 'heldout' not found"):
        prepare_data(DataConfig(path=str(folder), eval_split="heldout"))
    prepared = prepare_data(DataConfig(path=str(folder)))
    assert prepared.eval_split == "dev"
    assert len(prepared.retrieval_set.qrels["dev"]) == 1 and len(prepared.train_examples) == 9
