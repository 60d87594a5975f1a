"""Turn a mined training file into labelled pairs with curriculum phases (``embedtune prepare pairs``).

Each record of a file written by ``embedtune mine`` gives one pair per positive (label 1.0) and one per hard negative
(label 0.0), all tagged with the record's phase: its difficulty ``max(neg_scores) - max(pos_scores)`` (how close the
hardest mined negative comes to the best positive) cut into phases at given thresholds or into equal-size quantiles,
exactly as a curriculum with ``source: difficulty`` would cut it (:func:`embedtune.data.curriculum.assign_phases`).
The result is the ``{"text1", "text2", "label", "phase"}`` file that pair objectives (cosent, cosine_mse) train on,
that InfoNCE-style objectives regroup per query and phase, and that pair diagnostics score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embedtune.config import CurriculumConfig
from embedtune.data.curriculum import assign_phases
from embedtune.data.pairs import PairExample
from embedtune.data.training_file import load_triplets
from embedtune.data.types import TrainingExample
from embedtune.io import jsonl_line, write_lines_atomic

POSITIVE_LABEL, NEGATIVE_LABEL = 1.0, 0.0
"""Labels of a record's positives and of its mined hard negatives."""


@dataclass(frozen=True)
class GradedPairsSummary:
    """What :func:`build_graded_pairs` wrote.

    Attributes:
        records: Records read from the mined file.
        pairs: Pairs written.
        pairs_per_phase: Phase -> pairs in it, in phase order.
        records_per_phase: Phase -> records in it, in phase order.
        thresholds: The difficulty cut points used (one fewer than the phases).
    """

    records: int
    pairs: int
    pairs_per_phase: dict[str, int]
    records_per_phase: dict[str, int]
    thresholds: tuple[float, ...]

    def lines(self) -> list[str]:
        """Return the summary as printable lines."""
        cuts = ", ".join(f"{value:.4f}" for value in self.thresholds) or "none"
        rows = [f"{'phase':<10}{'records':>9}{'pairs':>9}"]
        rows += [
            f"{phase:<10}{self.records_per_phase[phase]:>9}{self.pairs_per_phase[phase]:>9}"
            for phase in self.pairs_per_phase
        ]
        return [f"records: {self.records}, pairs: {self.pairs}; difficulty cut points: {cuts}", *rows]


def graded_pairs(
    examples: Sequence[TrainingExample], phases: Sequence[str], thresholds: Sequence[float] | None, origin: str | Path
) -> tuple[list[PairExample], tuple[str, ...], tuple[float, ...]]:
    """Turn mined records into labelled pairs, each record's pairs tagged with its difficulty phase.

    Args:
        examples: Records with ``pos_scores`` and ``neg_scores`` (as ``embedtune mine`` writes them).
        phases: Phase names, easiest first.
        thresholds: Difficulty cut points (one fewer than ``phases``, increasing), or ``None`` for equal-size phases.
        origin: The mined file, named in errors.

    Returns:
        ``(pairs, phase of each record, thresholds used)``: per record in file order, its positives (label 1.0) then
        its negatives (label 0.0).

    Raises:
        embedtune.config.ConfigError: for bad phases or thresholds (naming ``curriculum.phases``/``thresholds``).
        embedtune.errors.DataError: naming ``origin`` and ``neg_scores`` for records without mined scores.
    """
    config = CurriculumConfig(
        enabled=True,
        source="difficulty",
        phases=list(phases),
        thresholds=None if thresholds is None else list(thresholds),
    )
    assignment = assign_phases(examples, config, origin)
    pairs: list[PairExample] = []
    record_phases = tuple(assignment.phases[index] for index in assignment.phase_of)
    for example, phase in zip(examples, record_phases, strict=True):
        pairs += [PairExample(example.query, text, POSITIVE_LABEL, phase) for text in example.pos]
        pairs += [PairExample(example.query, text, NEGATIVE_LABEL, phase) for text in example.neg]
    return pairs, record_phases, tuple(assignment.thresholds or ())


def pair_record(pair: PairExample) -> dict[str, object]:
    """Return the JSON object of one labelled pair (``phase`` only when it has one)."""
    record: dict[str, object] = {"text1": pair.text1, "text2": pair.text2, "label": pair.label}
    if pair.phase is not None:
        record["phase"] = pair.phase
    return record


def build_graded_pairs(
    mined_file: str | Path,
    out: str | Path,
    phases: Sequence[str] = ("easy", "medium", "hard"),
    thresholds: Sequence[float] | None = None,
    overwrite: bool = False,
) -> GradedPairsSummary:
    """Read a mined training file and write its labelled pairs with phases to ``out`` (UTF-8 JSONL, atomically).

    Args:
        mined_file: A training JSONL file with ``pos_scores`` and ``neg_scores`` (``embedtune mine``'s output).
        out: The pairs file to write; its folder must exist.
        phases: Phase names, easiest first.
        thresholds: Difficulty cut points, or ``None`` for equal-size phases.
        overwrite: Whether an existing ``out`` may be replaced.

    Returns:
        The counts written.

    Raises:
        FileExistsError: if ``out`` exists and ``overwrite`` is false; IsADirectoryError if it is a folder;
            FileNotFoundError if its folder is missing — all before reading anything.
        embedtune.errors.DataError: for a malformed or unscored mined file (file, line and field).
        embedtune.config.ConfigError: for bad phases or thresholds.
    """
    mined_file, out = Path(mined_file), Path(out)
    _check_out(out, overwrite)
    examples = load_triplets(mined_file)
    pairs, record_phases, used = graded_pairs(examples, phases, thresholds, mined_file)
    write_lines_atomic(out, (jsonl_line(pair_record(pair)) for pair in pairs))
    pairs_per_phase = dict.fromkeys(phases, 0)
    records_per_phase = dict.fromkeys(phases, 0)
    for pair in pairs:
        pairs_per_phase[pair.phase] += 1
    for phase in record_phases:
        records_per_phase[phase] += 1
    return GradedPairsSummary(len(examples), len(pairs), pairs_per_phase, records_per_phase, used)


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a destination that is a folder, exists without ``overwrite``, or lies in a missing folder."""
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; OUT must be a file path")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: folder not found (the folder of OUT must exist)")
