"""The report of ``embedtune data check`` and the helpers that assemble it: length stats, comparison counts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedtune.data.check_stats import CheckWarning, HeldOut, LengthStats, length_stats, truncation_warning
from embedtune.data.check_tokens import TokenCounter


@dataclass
class CheckReport:
    """What ``embedtune data check`` found in a valid data set.

    Attributes:
        path: The folder or file checked.
        kind: ``"beir"``, ``"training"`` or ``"pairs"``.
        tokenizer: The ``--model`` the lengths were counted with (``"whitespace"`` for words).
        max_seq_length: The length limit in tokens texts were compared with, or ``None`` when unknown.
        counts: Statistics by name: numbers, ``{"mean", "min", "max"}`` spreads, per-split or per-label mappings.
        lengths: ``"queries"`` and ``"documents"`` -> their token lengths (distinct texts for JSONL files).
        warnings: Problems found, in a fixed order; empty for a clean data set.
    """

    path: Path
    kind: str
    tokenizer: str
    max_seq_length: int | None
    counts: dict[str, Any]
    lengths: dict[str, LengthStats]
    warnings: list[CheckWarning]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data (paths as strings, dataclasses as objects)."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "tokenizer": self.tokenizer,
            "max_seq_length": self.max_seq_length,
            "counts": self.counts,
            "lengths": {name: dataclasses.asdict(stats) for name, stats in self.lengths.items()},
            "warnings": [
                dataclasses.asdict(warning) | {"examples": list(warning.examples)} for warning in self.warnings
            ],
        }


def compared_with(held_out: HeldOut | None) -> dict[str, Any]:
    """Return the counts entry naming the BEIR folder a file was compared with (empty without one).

    Args:
        held_out: The held-out side of the ``--beir`` folder, or ``None``.

    Returns:
        ``{"compared_with": {"folder", "held_out_splits"}}``, or ``{}``.
    """
    if held_out is None:
        return {}
    splits = ", ".join(held_out.splits) or "none (the folder has only train)"
    return {"compared_with": {"folder": str(held_out.folder), "held_out_splits": splits}}


def distinct_texts(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Keep the first ``(label, text)`` of each exact text.

    Args:
        items: ``(label, text)`` pairs.

    Returns:
        One pair per distinct text, in order of first appearance.
    """
    seen: dict[str, str] = {}
    for label, text in items:
        seen.setdefault(text, label)
    return [(label, text) for text, label in seen.items()]


def measure_lengths(
    counter: TokenCounter, queries: Sequence[tuple[str, str]], documents: Sequence[tuple[str, str]]
) -> tuple[dict[str, LengthStats], list[CheckWarning | None]]:
    """Count the tokens of ``(label, text)`` queries and documents.

    Args:
        counter: Counts tokens.
        queries: ``(label, text)`` of each query.
        documents: ``(label, text)`` of each document.

    Returns:
        ``(stats, warnings)``: the length stats of ``"queries"`` and ``"documents"``, and their truncation warnings
        (``None`` for each that found nothing).
    """
    stats: dict[str, LengthStats] = {}
    warnings: list[CheckWarning | None] = []
    for name, items in (("queries", queries), ("documents", documents)):
        labels = [label for label, _ in items]
        lengths = counter.count([text for _, text in items])
        stats[name] = length_stats(lengths, counter.max_seq_length)
        warnings.append(truncation_warning(f"long_{name}", name, labels, lengths, counter.max_seq_length))
    return stats, warnings


def build_report(
    path: Path,
    kind: str,
    counter: TokenCounter,
    counts: dict[str, Any],
    lengths: dict[str, LengthStats],
    warnings: Iterable[CheckWarning | None],
) -> CheckReport:
    """Assemble a report, dropping the warnings that found nothing.

    Args:
        path: The folder or file checked.
        kind: ``"beir"``, ``"training"`` or ``"pairs"``.
        counter: The token counter the lengths were counted with.
        counts: Statistics by name.
        lengths: Length stats by name.
        warnings: Warnings, ``None`` for checks that found nothing.

    Returns:
        The report.
    """
    found = [warning for warning in warnings if warning is not None]
    return CheckReport(path, kind, counter.name, counter.max_seq_length, counts, lengths, found)
