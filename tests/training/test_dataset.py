from embedtune.data.types import TrainingExample
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
