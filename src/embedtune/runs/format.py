"""Render run folders for ``embedtune runs list``, ``runs show`` and ``runs compare``.

Figures computed on the dev split that selected the checkpoint (report role ``selection``) are always labelled as
such and never as test figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from embedtune.runs.record import (
    CHOSEN_BASE,
    STATUS_CORRUPT,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    Report,
    RunMetrics,
    Selection,
)
from embedtune.runs.store import RunInfo
from embedtune.runs.text import (
    NO_VALUE,
    differing_settings,
    flatten_config,
    format_delta,
    format_duration,
    format_epoch,
    format_metric,
    format_table,
    format_value,
    ordered_union,
)
from embedtune.runs.validate import is_number

SEEN_UNSEEN = ("seen", "unseen")
"""The query groups of ``metrics.json``'s ``seen_unseen`` (a relevant document was a training positive, or not)."""


def split_label(report: Report, short: bool = False) -> str:
    """Name the split a run reports, flagging a selection split.

    Args:
        report: The run's report.
        short: Use the compact form for narrow table cells.

    Returns:
        ``"test"`` for a held-out split; ``"dev (selection split, not held-out test)"`` (short: ``"dev
        (selection)"``) for the dev split that selected the checkpoint.
    """
    if report.is_held_out:
        return report.split
    return f"{report.split} (selection)" if short else f"{report.split} (selection split, not held-out test)"


def format_run_list(runs: Sequence[RunInfo]) -> str:
    """Render runs as a plain-text table, one line per run; the trials of each ``embedtune tune`` study grouped.

    Columns: run folder, status, base model, primary metric as ``name base -> fine-tuned (delta)``, the split those
    figures come from (a selection split is marked), wall time. Ordinary runs come first, in the order given; then
    each study's trials under a ``study NAME (n trials)`` line, indented.

    Args:
        runs: Runs to show, in the order given.

    Returns:
        The table (no trailing newline), or a one-line message when ``runs`` is empty.
    """
    if not runs:
        return "No runs found."
    headers = ["RUN", "STATUS", "BASE MODEL", "PRIMARY METRIC (BASE -> FINE-TUNED)", "SPLIT", "WALL TIME"]
    studies: dict[str, list[RunInfo]] = {}
    for run in runs:
        studies.setdefault(run.config.get("study") or "", []).append(run)
    rows = [_run_row(run) for run in studies.pop("", [])]
    for study, trials in studies.items():
        rows.append([f"study {study} ({len(trials)} trials)", "", "", "", "", ""])
        rows += [[f"  {cells[0]}", *cells[1:]] for cells in map(_run_row, trials)]
    return format_table(headers, rows)


def _run_row(run: RunInfo) -> list[str]:
    return [
        run.folder,
        run.status,
        run.base_model or NO_VALUE,
        _primary_summary(run.metrics),
        split_label(run.report) if run.report else NO_VALUE,
        format_duration(run.metrics.wall_time_s if run.metrics else None),
    ]


def format_run_show(run: RunInfo) -> str:
    """Render everything a run records: identity, status and error, settings, versions, data hashes, metrics.

    Args:
        run: The run to show.

    Returns:
        Multi-section plain text (no trailing newline). A run whose ``run.json`` cannot be read shows its
        identity, status ``corrupt`` and the error only.
    """
    sections = [_header_section(run)]
    if run.record is None:
        return sections[0]
    sections += [
        _config_section(run.config),
        _key_value_section("Versions", run.record.versions),
        _key_value_section("Data hashes", run.record.data_hashes),
    ]
    if run.metrics is None:
        sections.append(_no_metrics_line(run))
    else:
        sections += _metrics_sections(run.metrics)
    return "\n\n".join(sections)


def format_run_compare(runs: Sequence[RunInfo]) -> str:
    """Render two or more runs side by side: their config differences, fine-tuned metrics and wall time.

    Args:
        runs: The runs, in column order. The first run's base-model figures are shown as a reference column.

    Returns:
        Plain text (no trailing newline).

    Raises:
        ValueError: if fewer than two runs are given.
    """
    if len(runs) < 2:
        raise ValueError(f"compare needs at least 2 runs, got {len(runs)}")
    return "\n\n".join([_runs_header(runs), _config_compare_section(runs), _metrics_compare_section(runs)])


# --- list --------------------------------------------------------------------------------------------------------


def _primary_summary(metrics: RunMetrics | None) -> str:
    """``ndcg@10 0.3000 -> 0.3500 (+0.0500)`` for the primary metric (``, base kept`` when so), or ``-``."""
    if metrics is None:
        return NO_VALUE
    name, report = metrics.primary_metric, metrics.report
    base, tuned = report.base.get(name), report.fine_tuned.get(name)
    if base is None and tuned is None:
        return NO_VALUE
    kept = ", base kept" if metrics.selection.chosen == CHOSEN_BASE else ""
    return f"{name} {format_metric(base)} -> {format_metric(tuned)} ({format_delta(base, tuned)}){kept}"


# --- show --------------------------------------------------------------------------------------------------------


def _header_section(run: RunInfo) -> str:
    """Identity lines of a run: folder, name, times, status and error, where and how it ran."""
    lines = [f"Run: {run.folder}", f"Path: {run.path}", f"Name: {run.name}", f"Status: {_status_text(run)}"]
    if run.error:
        lines.append(f"Error: {run.error}")
    record = run.record
    if record is None:
        return "\n".join(lines)
    return "\n".join(
        [
            *lines,
            f"Created: {record.created}",
            f"Finished: {record.finished or NO_VALUE}",
            f"Host: {record.host} (pid {record.pid})",
            f"Command: {record.command or NO_VALUE}",
            f"Base model: {run.base_model or NO_VALUE}",
            f"Git commit: {record.git_commit or 'unknown'}",
        ]
    )


def _status_text(run: RunInfo) -> str:
    """Return the status, explained when it was inferred from a dead process."""
    if run.process_gone and run.record is not None:
        return (
            f"{run.status} (recorded as running, but process {run.record.pid} on {run.record.host} "
            "has ended without finishing the record)"
        )
    return run.status


def _config_section(config: Mapping[str, Any]) -> str:
    """``Config:`` followed by one ``a.b.c = value`` line per setting."""
    lines = [f"  {key} = {format_value(value)}" for key, value in flatten_config(config).items()] or ["  (empty)"]
    return "\n".join(["Config:", *lines])


def _key_value_section(title: str, values: Mapping[str, Any]) -> str:
    """``<title>:`` followed by one ``key = value`` line per entry."""
    lines = [f"  {key} = {format_value(value)}" for key, value in values.items()] or ["  (none recorded)"]
    return "\n".join([f"{title}:", *lines])


def _no_metrics_line(run: RunInfo) -> str:
    """Why a run has no metrics to show."""
    if run.status == STATUS_RUNNING:
        return "Metrics: none yet (the run is still training)"
    if run.status in (STATUS_FAILED, STATUS_INTERRUPTED):
        return "Metrics: none (the run did not finish)"
    if run.status == STATUS_CORRUPT:
        return "Metrics: none readable (see the error above)"
    return "Metrics: none"


def _metrics_sections(metrics: RunMetrics) -> list[str]:
    """Report table, selection verdict, splits, curriculum, dev history, training loss and timing of a run."""
    curriculum = [_curriculum_section(metrics.curriculum)] if metrics.curriculum else []
    return [
        _report_section(metrics),
        _selection_line(metrics.selection, metrics.primary_metric),
        *([f"Seen/unseen: {metrics.seen_unseen.get('verdict')}"] if metrics.seen_unseen else []),
        _splits_line(metrics),
        *curriculum,
        _dev_history_section(metrics.dev_history),
        _loss_line(metrics.loss_history),
        _timing_section(metrics),
    ]


def _report_section(metrics: RunMetrics) -> str:
    """Table of the reported split's metrics: base | fine-tuned | delta per metric, under an honest title."""
    report = metrics.report
    if report.is_held_out:
        title = f"Test metrics ({report.split} split, primary: {metrics.primary_metric})"
    else:
        title = f"Metrics on {report.split} (selection split, not held-out test; primary: {metrics.primary_metric})"
    names = ordered_union(report.base, report.fine_tuned)
    if not names:
        return f"{title}: none recorded"
    rows = [
        [
            name,
            format_metric(report.base.get(name)),
            format_metric(report.fine_tuned.get(name)),
            format_delta(report.base.get(name), report.fine_tuned.get(name)),
        ]
        for name in names
    ]
    return f"{title}:\n" + format_table(["METRIC", "BASE", "FINE-TUNED", "DELTA"], rows, indent="  ")


def _selection_line(selection: Selection, metric: str) -> str:
    """Which model the run kept, with the dev figures that decided it."""
    if selection.chosen == CHOSEN_BASE:
        figures = f"dev {metric} best checkpoint {format_metric(selection.best_dev)} vs base {selection.base_dev:.4f}"
        return f"Selection: {selection.verdict} ({figures}, {selection.delta:+.4f})"
    where = "final fine-tuned model" if selection.step is None else f"checkpoint at step {selection.step}"
    figures = f"dev {metric} {format_metric(selection.best_dev)} vs base {format_metric(selection.base_dev)}"
    return f"Selection: fine-tuned {where} ({figures}, {selection.delta:+.4f})"


def _splits_line(metrics: RunMetrics) -> str:
    """Return ``Splits: train 900, dev 100, test 200 (training examples: 5000)``."""
    sizes = ", ".join(f"{name} {size}" for name, size in metrics.splits.items()) or "none recorded"
    return f"Splits: {sizes} (training examples: {metrics.num_train_examples})"


def _curriculum_section(schedule: Mapping[str, Any]) -> str:
    """Table of a curriculum run's phases in training order: examples, steps and difficulty cut of each."""
    epochs = schedule.get("epochs_per_phase")
    per_phase = f", {format_value(epochs)} epoch(s) per phase" if epochs is not None else ""
    rows = []
    for phase in schedule.get("phases", []):
        steps = phase.get("steps")
        rows.append(
            [
                format_value(phase.get("name")),
                format_value(phase.get("examples")),
                f"{steps[0]}-{steps[1]}" if steps else "none (empty)",
                f"<= {format_metric(phase['threshold'])}" if "threshold" in phase else NO_VALUE,
            ]
        )
    title = f"Curriculum (phases by {format_value(schedule.get('source'))}{per_phase}):"
    return f"{title}\n" + format_table(["PHASE", "EXAMPLES", "STEPS", "DIFFICULTY"], rows, indent="  ")


def _dev_history_section(history: Sequence[Mapping[str, float]]) -> str:
    """Table of the dev evaluations made during training: step, epoch, then each metric."""
    if not history:
        return "Dev history: none"
    names = [name for name in ordered_union(*history) if name not in ("step", "epoch")]
    rows = [
        [str(entry.get("step", NO_VALUE)), format_epoch(entry.get("epoch"))]
        + [format_metric(entry.get(name)) for name in names]
        for entry in history
    ]
    return "Dev history:\n" + format_table(["STEP", "EPOCH", *names], rows, indent="  ")


def _loss_line(history: Sequence[Mapping[str, float]]) -> str:
    """First and last logged training loss, or a note that none was logged."""
    if not history:
        return "Training loss: none logged"
    first, last = history[0], history[-1]
    return (
        f"Training loss: {format_metric(first['loss'])} at step {first['step']} -> "
        f"{format_metric(last['loss'])} at step {last['step']} ({len(history)} logged)"
    )


def _timing_section(metrics: RunMetrics) -> str:
    """Wall time, training time and peak memory lines, then the trainable parameters when recorded."""
    lines = [
        f"Wall time: {format_duration(metrics.wall_time_s)}",
        f"Train time: {format_duration(metrics.train_time_s)}",
        f"Peak memory: {metrics.peak_memory_mb:.1f} MB",
    ]
    if metrics.trainable_parameters:
        lines.append(_trainable_line(metrics.trainable_parameters))
    return "\n".join(lines)


def _trainable_line(counts: Mapping[str, Any]) -> str:
    """Return ``Trainable parameters: 1,536 of 23,552 (6.52 %; mode lora on query, key, value; with head)``."""
    trainable, total = counts["trainable"], counts["total"]
    share = f"{100 * trainable / total:.2f} %" if total else NO_VALUE
    mode = f"mode {counts['mode']}"
    if counts.get("lora_targets"):
        mode += f" on {', '.join(map(str, counts['lora_targets']))}"
    head = "; with head" if counts.get("head") else ""
    return f"Trainable parameters: {trainable:,} of {total:,} ({share}; {mode}{head})"


# --- compare -----------------------------------------------------------------------------------------------------


def _runs_header(runs: Sequence[RunInfo]) -> str:
    """Numbered list of the compared runs with their status."""
    lines = [f"  [{index}] {run.folder} ({run.status})" for index, run in enumerate(runs, start=1)]
    return "\n".join(["Runs:", *lines])


def _config_compare_section(runs: Sequence[RunInfo]) -> str:
    """Table of the settings that differ between the runs, one column per run."""
    differences = differing_settings([run.config for run in runs])
    if not differences:
        return "Config differences: none"
    headers = ["SETTING", *(f"[{index}]" for index in range(1, len(runs) + 1))]
    rows = [[key, *(format_value(value) for value in values)] for key, values in differences]
    return "Config differences:\n" + format_table(headers, rows, indent="  ")


def _group_delta(run: RunInfo, group: str) -> str:
    """``+0.0690 (196 q, p 0.0001)``: a run's mean Δ on its seen or unseen queries, or ``-`` when not recorded."""
    record = (run.metrics.seen_unseen if run.metrics else None) or {}
    sig = record.get(group)
    if not isinstance(sig, Mapping) or not all(is_number(sig.get(key)) for key in ("mean_diff", "p_permutation")):
        return NO_VALUE
    return f"{sig['mean_diff']:+.4f} ({sig.get('queries')} q, p {sig['p_permutation']:.2g})"


def _metrics_compare_section(runs: Sequence[RunInfo]) -> str:
    """Fine-tuned figures per run next to the first run's base model, the split of each, then wall time."""
    reports = [run.report for run in runs]
    reference = reports[0].base if reports[0] else {}
    tuned = [report.fine_tuned if report else {} for report in reports]
    headers = ["METRIC", "BASE [1]", *(f"[{index}]" for index in range(1, len(runs) + 1))]
    splits = [split_label(report, short=True) if report else NO_VALUE for report in reports]
    rows = [["split", splits[0], *splits]]
    rows += [
        [name, format_metric(reference.get(name)), *(format_metric(t.get(name)) for t in tuned)]
        for name in ordered_union(reference, *tuned)
    ]
    if any(run.metrics and run.metrics.seen_unseen for run in runs):
        rows += [
            [f"Δ {group} queries", NO_VALUE, *(_group_delta(run, group) for run in runs)] for group in SEEN_UNSEEN
        ]
    walls = [format_duration(run.metrics.wall_time_s if run.metrics else None) for run in runs]
    rows.append(["wall time", NO_VALUE, *walls])
    all_held_out = all(report is None or report.is_held_out for report in reports)
    title = (
        "Fine-tuned test metrics" if all_held_out else "Fine-tuned metrics (a selection split is not held-out test)"
    )
    return f"{title}:\n" + format_table(headers, rows, indent="  ")
