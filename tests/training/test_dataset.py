import logging

import pytest
import torch

from embedtune.data.types import TrainingExample
from embedtune.training.dataset import build_train_dataset, check_teacher_scores


def test_train_dataset_pads_missing_negatives_with_zero_weight():
    examples = [
        TrainingExample("q1", ("p1", "p1b"), ("n1", "n2"), (2.0, 0.5)),
        TrainingExample("q2", ("p2",), ("m1",), (3.0,)),
        TrainingExample("q3", ("p3",)),
    ]
    built = build_train_dataset(examples, max_hard_negatives=2)
    dataset = built.dataset
    assert built.num_negatives == 2
    assert dataset.column_names == ["anchor", "positive", "negative_1", "negative_2", "label"]
    assert dataset["anchor"] == ["q1", "q1", "q2", "q3"]
    assert dataset["positive"] == ["p1", "p1b", "p2", "p3"]
    assert dataset["negative_1"] == ["n1", "n1", "m1", "p3"]
    assert dataset["negative_2"] == ["n2", "n2", "p2", "p3"]
    assert dataset["label"] == [[0.0, 2.0, 0.5], [1.0, 2.0, 0.5], [2.0, 3.0, 0.0], [3.0, 0.0, 0.0]]


def test_without_padding_a_short_record_is_topped_up_with_other_records_negatives():
    examples = [TrainingExample("q1", ("p1",), ("n1", "n2")), TrainingExample("q2", ("p2",), ("m1",))]
    built = build_train_dataset(examples, max_hard_negatives=3, pad_negatives=False)
    assert built.num_negatives == 2
    assert built.dataset["negative_1"] == ["n1", "m1"]
    assert built.dataset["negative_2"] == ["n2", "n1"]


def test_train_dataset_without_negatives_has_pairs_and_row_indices():
    built = build_train_dataset([TrainingExample("q", ("p",), ("n",))], max_hard_negatives=0)
    assert built.dataset.column_names == ["anchor", "positive", "label"]
    assert built.dataset["label"] == [[0.0]]


def test_table_marks_other_positives_of_the_same_query_and_shared_documents():
    examples = [
        TrainingExample("q1", ("p1", "p2"), pos_ids=("d1", "d2")),
        TrainingExample("Q1 ", ("p3",)),  # same query after normalisation: p3 is relevant to both q1 rows
        TrainingExample("q2", ("other text of d1",), ("p2",), pos_ids=("d1",)),  # d1 by id; p2 as a negative by text
    ]
    built = build_train_dataset(examples, max_hard_negatives=1)
    rows = torch.arange(len(built.dataset))  # rows: q1/p1, q1/p2, Q1/p3, q2/d1
    mask = built.false_negatives.query_to_candidates_mask(rows, 2)
    batch = 4
    positives = mask[:, :batch]
    negatives = mask[:, batch:]
    assert positives.tolist() == [
        [False, True, True, True],  # q1: p2 and p3 by text, row 3's positive is d1 by id
        [True, False, True, True],
        [True, True, False, True],
        [True, False, False, False],  # q2: row 0's positive p1 is document d1, relevant to q2 by id
    ]
    # q2's hard negative p2 is q1's positive; padded negatives of rows 0-2 are not candidates
    assert negatives[:, 3].tolist() == [True, True, True, False]
    assert not negatives[:, :3].any()


def test_without_padding_records_borrow_only_unrelated_unrepeated_negatives(caplog):
    examples = [
        TrainingExample("q1", ("p1",), ("n1", "n2", "n3")),
        TrainingExample("q2", ("p2",)),  # no negative of its own
        TrainingExample("q3", ("p3",), ("p2", "m2")),  # p2 is relevant to q2: never borrowed by q2
        TrainingExample("q4", ("p4",), ("k1", "k2", "k3")),
        TrainingExample("q5", ("p5",), ("n1",)),  # short: its own n1 first, then q1's n2, n3 (n1 not repeated)
    ]
    with caplog.at_level("WARNING"):
        built = build_train_dataset(examples, max_hard_negatives=3, pad_negatives=False)

    assert built.num_negatives == 3
    rows = list(
        zip(built.dataset["negative_1"], built.dataset["negative_2"], built.dataset["negative_3"], strict=True)
    )
    assert rows == [
        ("n1", "n2", "n3"),
        ("m2", "k1", "k2"),
        ("p2", "m2", "k1"),
        ("k1", "k2", "k3"),
        ("n1", "n2", "n3"),
    ]
    assert "3 of 5 records have fewer than 3 hard negatives" in caplog.text


def scored(query, pos, neg, pos_scores, neg_scores) -> TrainingExample:
    return TrainingExample(query, pos, neg, pos_scores=pos_scores, neg_scores=neg_scores)


def test_teacher_scores_label_each_row_and_repeat_a_short_records_own_negatives(caplog):
    caplog.set_level(logging.INFO, logger="embedtune.training.dataset")
    examples = [
        scored("q1", ("p1", "p1b"), ("n1", "n2", "n3"), (0.9, 0.7), (0.5, 0.4, 0.1)),
        scored("q2", ("p2",), ("m1", "m2"), (0.8,), (0.6, 0.2)),
    ]
    built = build_train_dataset(examples, max_hard_negatives=4, teacher_scores=True)
    assert built.num_negatives == 3  # the most any record has; q2 repeats its own (another's would have no score)
    assert built.dataset["negative_3"] == ["n3", "n3", "m1"]
    assert "1 of 2 records have fewer than 3 hard negatives; each repeats its own" in caplog.text
    assert torch.allclose(
        torch.tensor(built.dataset["label"]),
        torch.tensor([[0.9, 0.5, 0.4, 0.1], [0.7, 0.5, 0.4, 0.1], [0.8, 0.6, 0.2, 0.6]]),
    )
    capped = build_train_dataset(examples, max_hard_negatives=1, teacher_scores=True)
    assert torch.allclose(torch.tensor(capped.dataset["label"]), torch.tensor([[0.9, 0.5], [0.7, 0.5], [0.8, 0.6]]))


@pytest.mark.parametrize(
    ("example", "problem"),
    [
        (scored("q", ("p",), (), (0.9,), ()), "has no hard negative"),
        (scored("q", ("p",), ("n",), (), (0.1,)), "has no pos_scores"),
        (scored("q", ("p",), ("n", "m"), (0.9,), (0.1,)), "has no neg_scores"),
    ],
)
def test_records_without_teacher_scores_are_named(example, problem):
    good = scored("ok", ("p0",), ("n0",), (0.5,), (0.1,))
    with pytest.raises(ValueError, match=f"the record of query 'q' {problem}"):
        check_teacher_scores([good, example])
    with pytest.raises(ValueError, match=problem):
        build_train_dataset([good, example], max_hard_negatives=1, teacher_scores=True)
