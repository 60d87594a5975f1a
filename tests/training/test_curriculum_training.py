"""Curriculum training: the ordered dataset, its batches, the sampler, phase-end evaluation, logs and records."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from datasets import Dataset
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from embedtune import runs
from embedtune.config import CurriculumConfig, build_config
from embedtune.data.curriculum import assign_phases
from embedtune.data.prepare import prepare_data
from embedtune.data.types import TrainingExample
from embedtune.errors import DataError
from embedtune.runs import RunMetrics
from embedtune.runs.errors import RunRecordError
from embedtune.training import fine_tune, pipeline
from embedtune.training.curriculum import (
    PHASE_TAG,
    CurriculumCallback,
    OrderedBatches,
    no_duplicate_batches,
    phase_stream,
    plan_curriculum,
)
from embedtune.training.dataset import build_train_dataset
from embedtune.training.pipeline import run_training
from tests.conftest import FRUITS, VEHICLES
from tests.runs.factories import make_metrics

PHASES = ("easy", "medium", "hard")


# --- the plan ----------------------------------------------------------------------------------------------------


def test_each_pass_is_a_seeded_shuffle_of_the_phase():
    rows = [10, 11, 12, 13, 14, 15]

    stream = phase_stream(rows, 2.0, seed=7, phase=1)

    assert sorted(stream[:6]) == rows and sorted(stream[6:]) == rows
    assert stream == phase_stream(rows, 2.0, seed=7, phase=1)
    assert stream != phase_stream(rows, 2.0, seed=8, phase=1)
    assert stream[:6] != stream[6:]  # a fresh shuffle per pass (true for this seed)


def test_a_fractional_pass_takes_the_first_part_of_one_more_shuffle():
    rows = list(range(5))

    assert len(phase_stream(rows, 1.5, seed=0, phase=0)) == 5 + 3  # ceil(0.5 * 5)
    half = phase_stream(rows, 0.5, seed=0, phase=0)
    assert len(half) == 3 and len(set(half)) == 3
    assert half == phase_stream(rows, 1.0, seed=0, phase=0)[:3]


def test_no_duplicate_batches_defer_a_clashing_row_and_keep_the_order():
    values = [frozenset({"q1", "a"}), frozenset({"q1", "b"}), frozenset({"q2", "c"}), frozenset({"q3", "d"})]

    batches = no_duplicate_batches([0, 1, 2, 3, 0], values, batch_size=2)

    assert batches == [[0, 2], [1, 3], [0]]
    assert no_duplicate_batches([0, 1, 2, 3], values, batch_size=10) == [[0, 2, 3], [1]]


def scored_examples(count: int) -> list[TrainingExample]:
    """Examples with difficulty ``-i / count`` (so the last ones are easiest), two positives each for odd i."""
    return [
        TrainingExample(
            query=f"query {i}",
            pos=(f"positive {i}",) + ((f"other positive {i}",) if i % 2 else ()),
            neg=(f"negative {i % 3}",),  # negatives repeat across rows: the no-duplicates check must see them
            pos_scores=(0.9,) * (1 + i % 2),
            neg_scores=(0.9 - i / count,),
        )
        for i in range(count)
    ]


def test_the_ordered_dataset_puts_every_phase_after_the_previous_one():
    examples = scored_examples(9)
    built = build_train_dataset(examples, max_hard_negatives=1)
    assignment = assign_phases(examples, CurriculumConfig(enabled=True, epochs_per_phase=2.0), "t")
    row_unit = [unit for unit, example in enumerate(examples) for _ in example.pos]

    plan = plan_curriculum(built.dataset, assignment, row_unit, 2.0, seed=42, batch_size=3)

    original_row = [label[0] for label in plan.dataset["label"]]  # the label keeps the row's original index
    phase_of_row = [assignment.phase_of[row_unit[int(row)]] for row in original_row]
    assert phase_of_row == sorted(phase_of_row)  # all easy, then all medium, then all hard
    rows_per_phase = Counter(row_unit[int(row)] for row in original_row)
    assert all(rows_per_phase[unit] == 2 * len(example.pos) for unit, example in enumerate(examples))
    assert sum(plan.batch_sizes) == len(plan.dataset) == 2 * len(row_unit)
    start = 0
    for step, size in enumerate(plan.batch_sizes, start=1):
        batch = plan.dataset[start : start + size]
        texts = [text for column in ("anchor", "positive", "negative_1") for text in batch[column]]
        assert len(set(texts)) == len(texts)  # no text twice in a batch
        assert {phase_of_row[row] for row in range(start, start + size)} == {plan.phase_at(step).number - 1}
        start += size
    spans = plan.spans
    assert [span.examples for span in spans] == [3, 3, 3]
    assert spans[0].first_step == 1 and spans[-1].last_step == plan.total_steps
    assert all(a.last_step + 1 == b.first_step for a, b in zip(spans, spans[1:], strict=False))
    again = plan_curriculum(built.dataset, assignment, row_unit, 2.0, seed=42, batch_size=3)
    assert again.dataset.to_dict() == plan.dataset.to_dict() and again.spans == plan.spans


def test_the_sampler_yields_the_planned_batches_in_order():
    dataset = Dataset.from_dict({"anchor": [f"q{i}" for i in range(6)]})

    sampler = OrderedBatches([2, 1, 3])(dataset, batch_size=3, drop_last=False, valid_label_columns=None, seed=0)

    assert list(sampler) == [[0, 1], [2], [3, 4, 5]] and len(sampler) == 3
    sampler.set_epoch(5)
    assert list(sampler) == [[0, 1], [2], [3, 4, 5]]
    with pytest.raises(ValueError, match="cover 4 rows, the dataset has 6"):
        OrderedBatches([2, 2])(dataset, batch_size=3, drop_last=False)


def small_plan():
    examples = scored_examples(6)
    built = build_train_dataset(examples, max_hard_negatives=1)
    assignment = assign_phases(examples, CurriculumConfig(enabled=True), "t")
    row_unit = [unit for unit, example in enumerate(examples) for _ in example.pos]
    return plan_curriculum(built.dataset, assignment, row_unit, 1.0, seed=0, batch_size=2)


def test_configure_trains_one_pass_in_plan_order(tmp_path):
    plan = small_plan()
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), num_train_epochs=4, report_to="none")

    callback = plan.configure(args, writer=None, max_steps=-1)

    assert args.num_train_epochs == 1 and args.max_steps == -1
    assert isinstance(args.batch_sampler, OrderedBatches) and args.batch_sampler.batch_sizes == plan.batch_sizes
    assert callback.plan is plan
    plan.configure(args, writer=None, max_steps=2)
    assert args.max_steps == 2
    plan.configure(args, writer=None, max_steps=plan.total_steps + 5)  # would repeat the curriculum
    assert args.max_steps == -1
    args.gradient_accumulation_steps = 2
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        plan.configure(args, writer=None, max_steps=-1)


class RecordingWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))


def test_the_callback_evaluates_at_phase_ends_and_logs_the_phase():
    plan = small_plan()
    writer = RecordingWriter()
    callback = CurriculumCallback(plan, writer)
    ends = {span.last_step for span in plan.spans}
    for step in range(1, plan.total_steps + 1):
        control = SimpleNamespace(should_evaluate=False, should_save=False)
        state = SimpleNamespace(global_step=step, max_steps=plan.total_steps)
        callback.on_step_end(None, state, control)
        # the last step is the trainer's to evaluate (at the epoch's end): flagging it too would evaluate it twice
        assert control.should_evaluate == control.should_save == (step in ends and step < plan.total_steps)
        callback.on_log(None, state, control, logs={"loss": 1.0})
    callback.on_log(None, SimpleNamespace(global_step=1), None, logs={"eval_dev_ndcg@10": 0.5})  # not a train log

    expected = [(PHASE_TAG, plan.phase_at(step).number, step) for step in range(1, plan.total_steps + 1)]
    assert writer.scalars == expected
    assert [value for _, value, _ in writer.scalars] == sorted(value for _, value, _ in writer.scalars)


# --- whole runs --------------------------------------------------------------------------------------------------


def record_loss_labels(monkeypatch: pytest.MonkeyPatch) -> list[list]:
    """Record the labels of every batch the trainer hands to the loss, in order."""
    seen: list[list] = []
    build_loss = fine_tune.build_loss

    def recording_build_loss(*args, **kwargs):
        loss = build_loss(*args, **kwargs)

        def hook(module, hook_args, hook_kwargs):
            labels = hook_args[1] if len(hook_args) > 1 else hook_kwargs["labels"]
            seen.append(labels.detach().cpu().tolist())

        loss.register_forward_pre_hook(hook, with_kwargs=True)
        return loss

    monkeypatch.setattr(fine_tune, "build_loss", recording_build_loss)
    return seen


def curriculum_config(model_dir: Path, data_dir: Path, train_file: Path, runs_dir: Path, *extra: str):
    return build_config(
        overrides=[
            f"model.name_or_path={model_dir}",
            f"data.path={data_dir}",
            f"data.train_file={train_file}",
            f"runs_dir={runs_dir}",
            "name=curriculum",
            "train.batch_size=2",
            "train.epochs=7",  # ignored: the curriculum decides the length
            "train.learning_rate=1e-3",
            "train.logging_steps=1",
            "data.dev_fraction=0.25",
            "curriculum.enabled=true",
            *extra,
        ]
    )


def write_mined_file(path: Path) -> Path:
    """A mined training file: one positive and one scored negative per fruit query, difficulty rising with i."""
    rows = [
        {
            "query": f"what color is the {fruit}",
            "pos": [f"the {fruit} is sweet fruit on a tree"],
            "neg": [f"the {VEHICLES[i % len(VEHICLES)]} is fast on the road"],
            "pos_scores": [0.8],
            "neg_scores": [0.1 * i],
        }
        for i, fruit in enumerate(FRUITS)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def tensorboard_scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_a_difficulty_curriculum_trains_easy_to_hard(tiny_model_dir, tiny_beir, tmp_path, monkeypatch):
    train_file = write_mined_file(tmp_path / "mined.jsonl")
    config = curriculum_config(
        tiny_model_dir, tiny_beir, train_file, tmp_path / "runs", "curriculum.epochs_per_phase=2"
    )
    seen = record_loss_labels(monkeypatch)

    result = run_training(config)

    # The trainer saw every batch in curriculum order: label[0] is the row's index in the training examples.
    examples = prepare_data(config.data).train_examples
    assignment = assign_phases(examples, config.curriculum, train_file)
    batch_phases = [{assignment.phase_of[int(label[0])] for label in batch} for batch in seen]
    assert all(len(phases) == 1 for phases in batch_phases)  # no batch mixes phases
    sequence = [phases.pop() for phases in batch_phases]
    assert sequence == sorted(sequence) and set(sequence) == {0, 1, 2}
    assert Counter(int(label[0]) for batch in seen for label in batch) == dict.fromkeys(range(len(examples)), 2)

    schedule = result.metrics.curriculum
    assert schedule["source"] == "difficulty" and schedule["epochs_per_phase"] == 2.0
    assert [phase["name"] for phase in schedule["phases"]] == list(PHASES)
    assert [phase["examples"] for phase in schedule["phases"]] == list(assignment.counts.values())
    assert all("threshold" in phase for phase in schedule["phases"][:2])
    ends = [phase["steps"][1] for phase in schedule["phases"]]
    assert ends[-1] == len(seen)  # one epoch over the ordered dataset: train.epochs=7 was ignored
    for phase, (first, last) in enumerate(phase["steps"] for phase in schedule["phases"]):
        assert set(sequence[first - 1 : last]) == {phase}

    dev_steps = [entry["step"] for entry in result.metrics.dev_history]
    assert dev_steps[0] == 0 and set(ends) <= set(dev_steps)  # dev at the start and at every phase's end
    logged = tensorboard_scalars(result.folder, PHASE_TAG)
    assert [step for step, _ in logged] == list(range(1, len(seen) + 1))
    assert [value for _, value in logged] == [phase + 1 for phase in sequence]

    saved = json.loads((result.folder / "metrics.json").read_text())
    assert saved["curriculum"] == schedule
    assert runs.load_run(result.folder).record.config["curriculum"]["enabled"] is True
    shown = runs.format_run_show(runs.load_run(result.folder))
    assert "Curriculum (phases by difficulty, 2.0 epoch(s) per phase):" in shown
    first, last = schedule["phases"][0]["steps"]
    threshold = schedule["phases"][0]["threshold"]
    assert f"easy    {schedule['phases'][0]['examples']}         {first}-{last}    <= {threshold:.4f}" in shown
    log = (result.folder / "train.log").read_text()
    first, last = schedule["phases"][1]["steps"]
    assert f"Curriculum phase 2/3 medium: {schedule['phases'][1]['examples']} examples" in log
    assert f"steps {first}–{last}" in log
    assert "train.epochs is ignored" in log


def write_phased_pairs(path: Path) -> Path:
    """Labelled pairs whose label encodes the phase: relevant 1.0 / 0.95 / 0.9, irrelevant 0.0 / 0.05 / 0.1."""
    records = []
    for i, fruit in enumerate(FRUITS + VEHICLES):
        phase = i % 3
        records.append({"text1": f"what color is the {fruit}", "text2": f"the {fruit} is sweet", "label": 1.0})
        records.append({"text1": f"what color is the {fruit}", "text2": "the sea is blue", "label": 0.0})
        for record in records[-2:]:
            record["label"] = abs(record["label"] - 0.05 * phase)
            record["phase"] = PHASES[phase]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def phase_of_label(label: float) -> int:
    return round(min(label, 1 - label) / 0.05)


def test_labelled_pairs_train_phase_by_phase_from_their_phase_field(tiny_model_dir, tiny_beir, tmp_path, monkeypatch):
    train_file = write_phased_pairs(tmp_path / "pairs.jsonl")
    config = curriculum_config(
        tiny_model_dir, tiny_beir, train_file, tmp_path / "runs", "loss.name=cosent", "curriculum.source=phase"
    )
    seen = record_loss_labels(monkeypatch)

    result = run_training(config)

    sequence = [phase_of_label(label) for batch in seen for label in batch]
    assert sequence == sorted(sequence) and set(sequence) == {0, 1, 2}
    schedule = result.metrics.curriculum
    assert schedule["source"] == "phase"
    assert all("threshold" not in phase for phase in schedule["phases"])
    train_pairs = prepare_data(config.data).train_pairs
    assert [phase["examples"] for phase in schedule["phases"]] == [
        sum(pair.phase == name for pair in train_pairs) for name in PHASES
    ]
    assert len(sequence) == len(train_pairs)


def test_a_bad_phase_fails_before_any_model_loads(tiny_beir, tmp_path, monkeypatch):
    train_file = write_phased_pairs(tmp_path / "pairs.jsonl")
    config = curriculum_config(
        Path("unused-model"),
        tiny_beir,
        train_file,
        tmp_path / "runs",
        "loss.name=cosent",
        "curriculum.phases=warmup,main",
    )

    def fail_if_called(*args, **kwargs):
        raise AssertionError("a model was loaded before the curriculum was checked")

    monkeypatch.setattr(pipeline, "load_base_model", fail_if_called)
    with pytest.raises(DataError, match=r"phase 'easy' .* is not one of curriculum.phases: warmup, main"):
        run_training(config)
    assert not (tmp_path / "runs").exists()


# --- the record --------------------------------------------------------------------------------------------------


def test_metrics_keep_the_schedule_and_old_metrics_still_read(tmp_path):
    schedule = small_plan().to_record()
    data = make_metrics().to_dict() | {"curriculum": schedule}
    assert RunMetrics.from_dict(data, tmp_path / "metrics.json").curriculum == schedule

    old = make_metrics().to_dict()
    del old["curriculum"]  # a metrics.json written before curricula existed
    assert RunMetrics.from_dict(old, tmp_path / "metrics.json").curriculum is None

    bad = json.loads(json.dumps(data))
    bad["curriculum"]["phases"][1]["steps"] = [3]
    with pytest.raises(RunRecordError, match=r"curriculum\.phases\[1\]\.steps"):
        RunMetrics.from_dict(bad, tmp_path / "metrics.json")


def test_max_steps_cuts_the_curriculum_short_with_step_evaluation(tiny_model_dir, tiny_beir, tmp_path, monkeypatch):
    train_file = write_mined_file(tmp_path / "mined.jsonl")
    extra = ("curriculum.epochs_per_phase=2", "train.eval_strategy=steps", "train.eval_steps=4", "train.max_steps=7")
    seen = record_loss_labels(monkeypatch)

    result = run_training(curriculum_config(tiny_model_dir, tiny_beir, train_file, tmp_path / "runs", *extra))

    assert len(seen) == 7  # of the 8 planned steps
    ends = [phase["steps"][1] for phase in result.metrics.curriculum["phases"]]
    assert ends == [3, 6, 8]
    assert [entry["step"] for entry in result.metrics.dev_history] == [0, 3, 4, 6, 7]  # phase ends, every 4, last
    assert "cuts the curriculum of 8 steps short" in (result.folder / "train.log").read_text()
