"""The typed schema of a run folder's records, shared by the writer (training) and the reader (``embedtune runs``).

``run.json`` holds a :class:`RunRecord` (written when the run starts, updated when it ends); ``metrics.json`` holds
a :class:`RunMetrics` (written once, when a run finishes). ``from_dict`` checks every field's type and raises
:class:`~embedtune.runs.errors.RunRecordError` naming the file and the field; ``to_dict`` gives the JSON content.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedtune.errors import describe_os_error
from embedtune.runs.errors import RunRecordError
from embedtune.runs.layout import METRICS_FILE, RUN_FILE
from embedtune.runs.validate import FieldReader, curriculum_field, trainable_parameters_field

STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"
RECORDED_STATUSES = (STATUS_RUNNING, STATUS_FINISHED, STATUS_FAILED, STATUS_INTERRUPTED)
"""The statuses a ``run.json`` may hold."""
STATUS_CORRUPT = "corrupt"
"""Given by the reader to a folder whose records cannot be read; never written."""

ROLE_TEST = "test"
"""The reported figures come from a held-out split that played no part in training or checkpoint selection."""
ROLE_SELECTION = "selection"
"""The reported figures come from the dev split that selected the checkpoint: optimistic, not a held-out test."""

CHOSEN_FINE_TUNED = "fine_tuned"
CHOSEN_BASE = "base"


@dataclass(frozen=True)
class RunRecord:
    """The content of ``run.json``: who started a run, with which settings and data, and how it ended.

    Attributes:
        name: Run name (the folder is ``<YYYYmmdd-HHMMSS>-<name>``).
        created: ISO-8601 time the run started.
        status: One of :data:`RECORDED_STATUSES`.
        finished: ISO-8601 time the run ended, or ``None`` while it runs.
        error: Why a failed or interrupted run stopped, or ``None``.
        pid: Process id of the training process.
        host: Host name of the machine it ran on.
        config: Nested dict of every resolved setting.
        versions: Package name -> installed version.
        data_hashes: Data file path -> sha256 hex digest.
        git_commit: Commit of the embedtune checkout (``+dirty`` when changed), or ``None`` outside git.
        command: The command line that started the run.
    """

    name: str
    created: str
    status: str
    pid: int
    host: str
    config: dict[str, Any]
    command: str
    versions: dict[str, str] = field(default_factory=dict)
    data_hashes: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    finished: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON content of ``run.json``, keys in schema order (status first, not in field order)."""
        order = ("name", "created", "status", "finished", "error", "pid", "host", "config", "versions")
        order += ("data_hashes", "git_commit", "command")
        return {key: getattr(self, key) for key in order}

    @classmethod
    def from_dict(cls, data: Any, path: str | Path) -> RunRecord:
        """Build a record from decoded ``run.json`` content, checking every field.

        Args:
            data: The decoded JSON value.
            path: The file it came from (named in errors).

        Returns:
            The record.

        Raises:
            RunRecordError: naming ``path`` and the field, if a field is missing or has the wrong type or value.
        """
        fields = FieldReader(data, Path(path))
        return cls(
            name=fields.string("name"),
            created=fields.timestamp("created"),
            status=fields.string("status", choices=RECORDED_STATUSES),
            finished=fields.optional_timestamp("finished"),
            error=fields.optional_string("error"),
            pid=fields.integer("pid", minimum=1),
            host=fields.string("host"),
            config=fields.obj("config"),
            versions=fields.string_map("versions"),
            data_hashes=fields.string_map("data_hashes"),
            git_commit=fields.optional_string("git_commit"),
            command=fields.string("command"),
        )


@dataclass(frozen=True)
class Report:
    """Base and fine-tuned figures on the split a run reports.

    Attributes:
        split: Name of the split evaluated (``"test"``, ``"dev"`` ...).
        role: :data:`ROLE_TEST` for a held-out split, :data:`ROLE_SELECTION` when it is the dev split that selected
            the checkpoint (the user asked for no test split): such figures must never be presented as test.
        base: Metric name -> value of the untouched base model.
        fine_tuned: Metric name -> value of the fine-tuned model.
    """

    split: str
    role: str
    base: dict[str, float]
    fine_tuned: dict[str, float]

    @property
    def is_held_out(self) -> bool:
        """Whether the figures come from a held-out test split (not the selection split)."""
        return self.role == ROLE_TEST

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON content of ``metrics.json``'s ``report``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, path: str | Path, prefix: str = "report") -> Report:
        """Build a report from decoded JSON, checking every field.

        Raises:
            RunRecordError: naming ``path`` and the field (under ``prefix``) on a bad field.
        """
        fields = FieldReader(data, Path(path), prefix)
        return cls(
            split=fields.string("split"),
            role=fields.string("role", choices=(ROLE_TEST, ROLE_SELECTION)),
            base=fields.number_map("base"),
            fine_tuned=fields.number_map("fine_tuned"),
        )


@dataclass(frozen=True)
class ExtraReport:
    """Base and fine-tuned figures on an out-of-domain set (``eval.extra_datasets``): the forgetting check.

    Attributes:
        dataset: The dataset as configured (a BEIR folder, optionally ``FOLDER:SPLIT``).
        split: The split evaluated.
        base: Metric name -> value of the base model.
        fine_tuned: Metric name -> value of the selected model.
        drop: Base minus fine-tuned on the primary metric (positive = worse after fine-tuning).
        forgetting: Whether ``drop`` exceeds ``eval.forgetting_threshold``.
    """

    dataset: str
    split: str
    base: dict[str, float]
    fine_tuned: dict[str, float]
    drop: float
    forgetting: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON content."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, path: str | Path, prefix: str) -> ExtraReport:
        """Build from decoded JSON, checking every field.

        Raises:
            RunRecordError: naming ``path`` and the field.
        """
        fields = FieldReader(data, Path(path), prefix)
        return cls(
            dataset=fields.string("dataset"),
            split=fields.string("split"),
            base=fields.number_map("base"),
            fine_tuned=fields.number_map("fine_tuned"),
            drop=fields.number("drop"),
            forgetting=fields.boolean("forgetting"),
        )


@dataclass(frozen=True)
class Selection:
    """Which model a run kept, decided on the dev split by the primary metric.

    Attributes:
        chosen: :data:`CHOSEN_FINE_TUNED` or :data:`CHOSEN_BASE` (the fine-tuned model never beat the base model).
        step: Training step of the kept checkpoint, or ``None`` (base kept, or step unknown).
        base_dev: Base model's primary metric on dev.
        best_dev: Best fine-tuned checkpoint's primary metric on dev.
        delta: ``best_dev - base_dev``.
        verdict: One sentence explaining the choice, for people.
        rule: The rule that decided, in words (e.g. ``"Δ > 0 and paired randomisation test p < 0.05 on the whole dev
            corpus"``); empty in runs made before the rule was recorded.
        dev_comparison: The best checkpoint against the base model query by query on the dev split the rule used
            (:meth:`embedtune.evaluation.significance.PairedComparison.to_dict`), or ``None``.
        interpolation: With ``train.interpolation`` (WiSE-FT), ``{"setting", "alpha", "grid"}``: the share of the
            fine-tuning in the candidate and the dev figure of each share tried (``[{"alpha", <metric>}]``; empty
            for a fixed share); ``None`` without interpolation.
    """

    chosen: str
    step: int | None
    base_dev: float
    best_dev: float
    delta: float
    verdict: str
    rule: str = ""
    dev_comparison: dict[str, Any] | None = None
    interpolation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON content of ``metrics.json``'s ``selection``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, path: str | Path, prefix: str = "selection") -> Selection:
        """Build a selection from decoded JSON, checking every field.

        Raises:
            RunRecordError: naming ``path`` and the field (under ``prefix``) on a bad field.
        """
        fields = FieldReader(data, Path(path), prefix)
        return cls(
            chosen=fields.string("chosen", choices=(CHOSEN_FINE_TUNED, CHOSEN_BASE)),
            step=fields.optional_integer("step", minimum=0),
            base_dev=fields.number("base_dev"),
            best_dev=fields.number("best_dev"),
            delta=fields.number("delta"),
            verdict=fields.string("verdict"),
            rule=fields.data.get("rule") if isinstance(fields.data.get("rule"), str) else "",
            dev_comparison=fields.optional_obj("dev_comparison"),
            interpolation=fields.optional_obj("interpolation"),
        )


@dataclass(frozen=True)
class RunMetrics:
    """The content of ``metrics.json``, written once when a run finishes.

    Attributes:
        primary_metric: The metric checkpoints were selected by, e.g. ``"ndcg@10"``.
        report: Base vs fine-tuned figures on the reported split.
        selection: Which model was kept and why.
        dev_history: One entry per dev evaluation: ``{"step": int, "epoch": float, <metric>: float, ...}``.
        loss_history: One entry per logged training loss: ``{"step": int, "loss": float}``.
        splits: Split name -> number of queries (or examples) in it.
        num_train_examples: Training examples used.
        wall_time_s: Seconds from start to end of the run.
        train_time_s: Seconds spent training.
        peak_memory_mb: Peak memory in MiB.
        significance: Fine-tuned vs base on the reported split, query by query
            (:meth:`embedtune.evaluation.significance.PairedComparison.to_dict`), or ``None``.
        extra_reports: The forgetting check on each ``eval.extra_datasets`` entry.
        pair_diagnostics: For labelled-pair runs, ``{"base": {...}, "fine_tuned": {...}}`` pair metrics, or ``None``.
        curriculum: For a curriculum run, its schedule: ``{"source", "epochs_per_phase", "phases": [{"name",
            "examples", "rows", "steps": [first, last] or null, "threshold"?}]}``; ``None`` otherwise (and in runs
            made before curricula existed).
        trainable_parameters: How many parameters trained: ``{"trainable": n, "total": N, "mode": "full"|"lora",
            "head": bool, "lora_targets"?: [...]}``; ``None`` when not counted (and in runs made before it was).
        seen_unseen: The reported comparison split into queries whose relevant documents were training positives
            and the others (:func:`embedtune.evaluation.seen_unseen.split_comparison`); ``None`` in older runs.
    """

    primary_metric: str
    report: Report
    selection: Selection
    dev_history: list[dict[str, float]]
    loss_history: list[dict[str, float]]
    splits: dict[str, int]
    num_train_examples: int
    wall_time_s: float
    train_time_s: float
    peak_memory_mb: float
    significance: dict[str, Any] | None = None
    extra_reports: list[ExtraReport] = field(default_factory=list)
    pair_diagnostics: dict[str, Any] | None = None
    curriculum: dict[str, Any] | None = None
    trainable_parameters: dict[str, Any] | None = None
    seen_unseen: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON content of ``metrics.json``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, path: str | Path) -> RunMetrics:
        """Build metrics from decoded ``metrics.json`` content, checking every field.

        Args:
            data: The decoded JSON value.
            path: The file it came from (named in errors).

        Returns:
            The metrics.

        Raises:
            RunRecordError: naming ``path`` and the field, if a field is missing or has the wrong type or value.
        """
        fields = FieldReader(data, Path(path))
        return cls(
            primary_metric=fields.string("primary_metric"),
            report=Report.from_dict(fields.obj("report"), path),
            selection=Selection.from_dict(fields.obj("selection"), path),
            dev_history=fields.history("dev_history", required=("step", "epoch")),
            loss_history=fields.history("loss_history", required=("step", "loss")),
            splits=fields.count_map("splits"),
            num_train_examples=fields.integer("num_train_examples", minimum=0),
            wall_time_s=fields.non_negative("wall_time_s"),
            train_time_s=fields.non_negative("train_time_s"),
            peak_memory_mb=fields.non_negative("peak_memory_mb"),
            significance=fields.optional_obj("significance"),
            extra_reports=_extra_reports(fields, path),
            pair_diagnostics=fields.optional_obj("pair_diagnostics"),
            curriculum=curriculum_field(fields),
            trainable_parameters=trainable_parameters_field(fields),
            seen_unseen=fields.optional_obj("seen_unseen"),
        )


def _extra_reports(fields: FieldReader, path: str | Path) -> list[ExtraReport]:
    """Read the optional ``extra_reports`` array (absent in runs made before the forgetting check existed)."""
    items = fields.data.get("extra_reports")
    if items is None:
        return []
    if not isinstance(items, list):
        fields._wrong_type("extra_reports", "an array", items)
    return [ExtraReport.from_dict(item, path, f"extra_reports[{index}]") for index, item in enumerate(items)]


def read_run_record(folder: str | Path) -> RunRecord:
    """Read and check ``<folder>/run.json``.

    Raises:
        RunRecordError: naming the file, if it is missing, unreadable, not JSON or does not fit the schema.
    """
    path = Path(folder) / RUN_FILE
    return RunRecord.from_dict(read_json_file(path), path)


def read_run_metrics(folder: str | Path) -> RunMetrics:
    """Read and check ``<folder>/metrics.json``.

    Raises:
        RunRecordError: naming the file, if it is missing, unreadable, not JSON or does not fit the schema.
    """
    path = Path(folder) / METRICS_FILE
    return RunMetrics.from_dict(read_json_file(path), path)


def read_json_file(path: Path) -> Any:
    """Decode a UTF-8 JSON file.

    Raises:
        RunRecordError: naming ``path`` (no field) if it is missing, unreadable, not UTF-8 or not valid JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunRecordError(path, None, "file not found") from None
    except UnicodeDecodeError as error:
        raise RunRecordError(path, None, f"not valid UTF-8 ({error.reason})") from None
    except OSError as error:
        raise RunRecordError(path, None, f"cannot read: {describe_os_error(error)}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RunRecordError(path, None, f"not valid JSON: {error.msg} (line {error.lineno})") from None
    except (RecursionError, ValueError) as error:
        raise RunRecordError(path, None, f"not valid JSON: {type(error).__name__}") from None
