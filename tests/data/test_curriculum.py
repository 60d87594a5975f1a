"""Curriculum phase assignment: phase fields, mined difficulty (thresholds and equal-size phases), and its errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from embedtune.config import CurriculumConfig, build_config
from embedtune.data.curriculum import (
    SOURCE_DIFFICULTY,
    SOURCE_PHASE,
    assign_phases,
    check_curriculum,
    difficulty,
)
from embedtune.data.pairs import PairExample
from embedtune.data.prepare import prepare_data
from embedtune.data.training_file import load_triplets
from embedtune.data.types import TrainingExample
from embedtune.errors import DataError


def scored(index: int, d: float, phase: str | None = None) -> TrainingExample:
    """An example whose difficulty is ``d`` (best positive 0.5, hardest negative 0.5 + d)."""
    return TrainingExample(
        query=f"query {index}",
        pos=(f"positive {index}", f"second positive {index}"),
        neg=(f"negative {index}", f"easy negative {index}"),
        pos_scores=(0.5, 0.1),
        neg_scores=(0.5 + d, -1.0),
        phase=phase,
    )


def curriculum(**settings) -> CurriculumConfig:
    return CurriculumConfig(enabled=True, **settings)


def test_difficulty_is_the_hardest_negative_minus_the_best_positive():
    example = TrainingExample("q", ("p1", "p2"), ("n1", "n2"), pos_scores=(0.7, 0.9), neg_scores=(0.2, 0.8))
    assert difficulty(example) == pytest.approx(0.8 - 0.9)
    assert difficulty(TrainingExample("q", ("p",), ("n",))) is None
    assert difficulty(TrainingExample("q", ("p",), (), pos_scores=(0.9,))) == -math.inf  # mined, none kept


def test_mined_examples_left_without_negatives_open_the_first_phase():
    examples = [scored(i, d) for i, d in enumerate([0.3, -0.2, 0.1, -0.5, 0.0, 0.4])]
    examples.append(TrainingExample("q-none", ("p",), (), pos_scores=(0.9,)))
    assignment = assign_phases(examples, curriculum(source="difficulty"), "t")
    assert assignment.phase_of[-1] == 0
    assert all(math.isfinite(value) for value in assignment.thresholds)


def test_equal_size_phases_are_terciles_by_difficulty():
    ds = [0.3, -0.2, 0.1, -0.5, 0.0, 0.4, -0.1, 0.2, -0.3]
    examples = [scored(i, d) for i, d in enumerate(ds)]

    assignment = assign_phases(examples, curriculum(source="difficulty"), "train.jsonl")

    assert assignment.source == SOURCE_DIFFICULTY
    assert assignment.counts == {"easy": 3, "medium": 3, "hard": 3}
    by_phase = [sorted(ds[i] for i in assignment.members(p)) for p in range(3)]
    assert by_phase == [[-0.5, -0.3, -0.2], [-0.1, 0.0, 0.1], [0.2, 0.3, 0.4]]
    assert assignment.thresholds == pytest.approx((-0.2, 0.1))  # the largest difficulty of each phase but the last
    assert assignment.difficulties == pytest.approx(tuple(ds))


def test_uneven_sizes_give_the_first_phases_one_more_and_ties_break_by_input_order():
    examples = [scored(i, 0.0) for i in range(10)]  # all tied

    assignment = assign_phases(examples, curriculum(source="difficulty"), "train.jsonl")

    assert assignment.counts == {"easy": 4, "medium": 3, "hard": 3}
    assert assignment.phase_of == (0, 0, 0, 0, 1, 1, 1, 2, 2, 2)


def test_fewer_examples_than_phases_leaves_the_last_phases_empty():
    assignment = assign_phases([scored(0, 0.3)], curriculum(source="difficulty"), "train.jsonl")

    assert assignment.counts == {"easy": 1, "medium": 0, "hard": 0}
    assert assignment.thresholds == pytest.approx((0.3, 0.3))


def test_thresholds_cut_difficulty_with_the_cut_value_in_the_lower_phase():
    ds = [-0.4, -0.2, -0.1, 0.0, 0.05, 0.3]
    config = curriculum(source="difficulty", thresholds=[-0.2, 0.0])

    assignment = assign_phases([scored(i, d) for i, d in enumerate(ds)], config, "train.jsonl")

    assert assignment.phase_of == (0, 0, 1, 1, 2, 2)
    assert assignment.thresholds == (-0.2, 0.0)


def test_thresholds_may_leave_a_phase_empty():
    config = curriculum(source="difficulty", thresholds=[0.5, 0.6])

    assignment = assign_phases([scored(i, -0.1 * i) for i in range(4)], config, "train.jsonl")

    assert assignment.counts == {"easy": 4, "medium": 0, "hard": 0}


def test_assignment_is_deterministic():
    ds = [0.1, 0.1, -0.3, 0.2, 0.1, 0.0, 0.1]
    examples = [scored(i, d) for i, d in enumerate(ds)]
    config = curriculum(source="difficulty", phases=["a", "b"])

    first = assign_phases(examples, config, "train.jsonl")
    again = assign_phases(list(examples), config, "train.jsonl")

    assert first == again
    assert first.phase_of == (0, 0, 0, 1, 1, 0, 1)  # the four 0.1 ties split by input order: 0 and 1 first


def test_phase_fields_give_the_phase():
    examples = [scored(i, 0.0, phase) for i, phase in enumerate(["hard", "easy", "medium", "easy"])]

    assignment = assign_phases(examples, curriculum(source="phase"), "train.jsonl")

    assert assignment.source == SOURCE_PHASE
    assert assignment.phase_of == (2, 0, 1, 0)
    assert assignment.counts == {"easy": 2, "medium": 1, "hard": 1}
    assert assignment.thresholds is None and assignment.difficulties is None


def test_a_phase_outside_the_configured_phases_is_an_error_naming_both():
    examples = [scored(0, 0.0, "easy"), scored(1, 0.0, "warmup"), scored(2, 0.0, "warmup")]

    with pytest.raises(DataError) as error:
        assign_phases(examples, curriculum(source="phase"), "train.jsonl")

    assert error.value.field == "phase" and error.value.path == Path("train.jsonl")
    assert "'warmup' (2 record(s), first: query 'query 1')" in str(error.value)
    assert "curriculum.phases: easy, medium, hard" in str(error.value)


def test_source_phase_needs_a_phase_on_every_record():
    examples = [scored(0, 0.0, "easy"), scored(1, 0.0), scored(2, 0.0)]

    with pytest.raises(
        DataError, match=r"phase on every training record; 2 of 3 have none \(first: query 'query 1'\)"
    ):
        assign_phases(examples, curriculum(source="phase"), "train.jsonl")


def test_examples_without_scores_tell_the_user_to_mine():
    examples = [scored(0, 0.1), TrainingExample("bare query", ("p",), ("n",))]

    with pytest.raises(DataError) as error:
        assign_phases(examples, curriculum(source="difficulty"), "train.jsonl")

    assert error.value.field == "neg_scores"
    assert "1 of 2 have none (first: query 'bare query')" in str(error.value)
    assert "Run `embedtune mine`" in str(error.value)


def test_auto_uses_phase_fields_when_every_record_has_one_else_difficulty():
    with_phases = [scored(i, -i, phase) for i, phase in enumerate(["hard", "medium", "easy"])]
    assert assign_phases(with_phases, curriculum(), "t").phase_of == (2, 1, 0)

    some_phases = [scored(0, 0.3, "easy"), scored(1, -0.3), scored(2, 0.0)]
    assignment = assign_phases(some_phases, curriculum(), "t")
    assert assignment.source == SOURCE_DIFFICULTY and assignment.phase_of == (2, 0, 1)

    unscored = [TrainingExample("q0", ("p",), phase="easy"), TrainingExample("q1", ("p",))]
    with pytest.raises(DataError, match=r"embedtune mine.*give every record a phase \(1 of 2 have one\)"):
        assign_phases(unscored, curriculum(), "t")


def test_labelled_pairs_follow_their_phase_field():
    pairs = [PairExample("q0", "p0", 1.0, "medium"), PairExample("q1", "p1", 0.0, "easy")]

    assert assign_phases(pairs, curriculum(), "pairs.jsonl").phase_of == (1, 0)
    with pytest.raises(DataError, match="labelled pairs do not have"):
        assign_phases(pairs, curriculum(source="difficulty"), "pairs.jsonl")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_phases_and_scores_read_from_a_training_file(tmp_path):
    records = [
        {"query": f"q{i}", "pos": [f"p{i}"], "neg": [f"n{i}"], "pos_scores": [0.8], "neg_scores": [0.8 - i / 10]}
        | ({"phase": "easy"} if i == 0 else {})
        for i in range(6)
    ]
    examples = load_triplets(write_jsonl(tmp_path / "mined.jsonl", records))

    assignment = assign_phases(examples, curriculum(), tmp_path / "mined.jsonl")  # one phase field: difficulty

    assert assignment.phase_of == (2, 2, 1, 1, 0, 0)  # d = -i/10: the later records are the easy ones


def config_for(train_file: Path, runs: Path, *extra: str):
    return build_config(overrides=[f"data.train_file={train_file}", f"runs_dir={runs}", *extra])


def test_check_curriculum_runs_only_when_enabled_and_names_the_training_file(tmp_path):
    records = [{"query": f"what is q{i}", "pos": [f"passage {i}"], "phase": "late"} for i in range(12)]
    train_file = write_jsonl(tmp_path / "train.jsonl", records)
    config = config_for(train_file, tmp_path / "runs")
    data = prepare_data(config.data)
    assert check_curriculum(config, data) is None

    enabled = config_for(train_file, tmp_path / "runs", "curriculum.enabled=true")
    with pytest.raises(DataError) as error:
        check_curriculum(enabled, data)
    assert error.value.path == train_file and "'late'" in str(error.value)


def test_check_curriculum_assigns_the_labelled_pairs_of_a_pairs_file(tmp_path):
    phases = ["easy", "medium", "hard"]
    records = [
        {"text1": f"what is q{i}", "text2": f"passage {i}{suffix}", "label": label, "phase": phases[i % 3]}
        for i in range(12)
        for suffix, label in (("", 1.0), (" other", 0.0))
    ]
    train_file = write_jsonl(tmp_path / "pairs.jsonl", records)
    config = config_for(train_file, tmp_path / "runs", "curriculum.enabled=true", "loss.name=cosent")
    data = prepare_data(config.data)

    assignment = check_curriculum(config, data)

    assert assignment is not None and len(assignment.phase_of) == len(data.train_pairs)
    assert [assignment.phases[p] for p in assignment.phase_of] == [pair.phase for pair in data.train_pairs]
