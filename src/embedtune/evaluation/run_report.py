"""The run report: ``report.md`` plus PNG figures under ``figures/``, rebuilt from a finished run folder's records.

It reads ``run.json`` and ``metrics.json`` (required), ``per_query.json`` and ``score_distributions.json`` (optional:
a missing file omits its section). Every file is written atomically; regenerating replaces the report's own files
only (``report.md`` and the figures of :data:`FIGURE_FILES`), never ``model/`` or the records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from embedtune.io import write_lines_atomic
from embedtune.runs import CHOSEN_BASE, METRICS_FILE, RunMetrics, load_run, read_run_metrics, read_run_record
from embedtune.runs import split_label as _split_label
from embedtune.runs.layout import FIGURES_DIR, PER_QUERY_FILE, REPORT_FILE, SCORE_DISTRIBUTIONS_FILE
from embedtune.runs.record import read_json_file
from embedtune.runs.text import format_delta, format_metric, ordered_union
from embedtune.runs.validate import is_number

FIGURE_FILES = (
    "metrics.png",
    "seen_unseen.png",
    "per_query_delta.png",
    "score_distributions.png",
    "training.png",
    "matryoshka.png",
)
"""Every figure a run report may hold; a regenerated report deletes those of them it no longer draws."""
SELECTION_WARNING = "selection split — not a held-out test"
PAIR_FIELDS = ("spearman", "roc_auc", "f1", "accuracy", "threshold", "separability", "n_pairs", "passed")
_DIMENSION_KEY = re.compile(r"^(?P<metric>.+)@(?P<dim>[1-9][0-9]*)d$")
_PAIR_MODELS = (("base", "base"), ("fine_tuned", "fine-tuned"))
_SIGNIFICANCE_KEYS = ("queries", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "p_permutation", "p_ttest")


def write_report(run_folder: str | Path) -> Path:
    """Write ``<run_folder>/report.md`` and its figures under ``<run_folder>/figures/``.

    Args:
        run_folder: A finished run folder (holding ``run.json`` and ``metrics.json``).

    Returns:
        The path of ``report.md``.

    Raises:
        ValueError: if the run has no ``metrics.json`` (it has not finished).
        embedtune.runs.RunRecordError: (a ValueError) naming the file, if a record, ``per_query.json`` or
            ``score_distributions.json`` is unreadable, not JSON or (for the records) off-schema.
        OSError: if a report file cannot be written.
    """
    folder = Path(run_folder)
    if not (folder / METRICS_FILE).is_file():
        raise ValueError(f"{folder}: no {METRICS_FILE}, the run has not finished; nothing to report")
    record, metrics = read_run_record(folder), read_run_metrics(folder)
    optional = (folder / PER_QUERY_FILE, folder / SCORE_DISTRIBUTIONS_FILE)
    per_query, scores = (read_json_file(path) if path.is_file() else None for path in optional)
    (folder / FIGURES_DIR).mkdir(exist_ok=True)
    report = _RunReport(folder / FIGURES_DIR, metrics)
    model = record.config.get("model") if isinstance(record.config.get("model"), dict) else {}
    lines = [f"# Run report: {folder.name}", "", f"Run `{record.name}`, base model `{model.get('name_or_path')}`."]
    lines += ["", *report.verdict_lines(), *report.metric_section(), *report.significance_section()]
    lines += report.seen_unseen_section()
    lines += report.per_query_section(per_query) + report.dimension_section() + report.score_section(scores)
    lines += report.pair_section() + report.forgetting_section() + report.training_section()
    path = folder / REPORT_FILE
    write_lines_atomic(path, [line + "\n" for line in lines])
    for stale in set(FIGURE_FILES) - report.drawn:
        (folder / FIGURES_DIR / stale).unlink(missing_ok=True)
    return path


def compare_report(run_folders: Sequence[str | Path], out_path: str | Path) -> Path:
    """Write a Markdown side-by-side of several runs: one metric table and one bar figure.

    Columns: the first run's base model, then each run's selected model; a run without metrics shows ``-``. The
    figure is written beside the report as ``<out_path stem>-metrics.png``.

    Args:
        run_folders: Two or more run folders, in column order.
        out_path: The Markdown file to write (its folder must exist).

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: if fewer than two runs are given.
        OSError: if a file cannot be written.
    """
    if len(run_folders) < 2:
        raise ValueError(f"compare needs at least 2 runs, got {len(run_folders)}")
    runs, out = [load_run(folder) for folder in run_folders], Path(out_path)
    series = {"base [1]": dict(runs[0].report.base) if runs[0].report else {}}
    for index, run in enumerate(runs, start=1):
        series[f"[{index}] {run.name}"] = dict(run.report.fine_tuned) if run.report else {}
    names = [name for name in ordered_union(*series.values()) if not _DIMENSION_KEY.match(name)]
    splits = [_split_label(run.report, short=True) if run.report else "-" for run in runs]
    rows = [["split", splits[0], *splits]]
    rows += [[name, *(format_metric(values.get(name)) for values in series.values())] for name in names]
    lines = ["# Run comparison", ""]
    lines += [f"- [{index}] `{run.folder}` ({run.status})" for index, run in enumerate(runs, start=1)]
    if any(run.report is not None and not run.report.is_held_out for run in runs):
        lines += ["", f"> **⚠ A run marked (selection) reports figures on its {SELECTION_WARNING}.**"]
    lines += ["", *_table(["metric", *(_escape(label) for label in series)], rows), ""]
    if names:
        figure = out.with_name(f"{out.stem}-metrics.png")
        picked = {label: {name: values[name] for name in names if name in values} for label, values in series.items()}
        # matplotlib is slow to import: only when drawing
        from embedtune.evaluation.figures import compare_bars

        compare_bars(figure, picked, "Base model [1] and each run's selected model")
        lines += [f"![metrics of the compared runs]({figure.name})", ""]
    write_lines_atomic(out, [line + "\n" for line in lines])
    return out


class _RunReport:
    """Build the sections of one run's report, drawing their figures into ``figures_dir`` (names in ``drawn``)."""

    def __init__(self, figures_dir: Path, metrics: RunMetrics) -> None:
        self.figures_dir, self.metrics, self.drawn = figures_dir, metrics, set()
        self.primary, self.report = metrics.primary_metric, metrics.report

    def figure(self, name: str, draw: str, *args: Any) -> list[str]:
        """Draw figure ``name`` with ``figures.<draw>(path, *args)``; return its Markdown image lines."""
        from embedtune.evaluation import figures  # matplotlib is slow to import: only when drawing

        getattr(figures, draw)(self.figures_dir / name, *args)
        self.drawn.add(name)
        return [f"![{name.removesuffix('.png')}]({FIGURES_DIR}/{name})", ""]

    def verdict_lines(self) -> list[str]:
        """Return the opening: model kept, significance, forgetting, pair pass/fail, a selection-split warning."""
        selection, metrics = self.metrics.selection, self.metrics
        kept = "the final fine-tuned model" if selection.step is None else f"the checkpoint at step {selection.step}"
        kept = "the base model" if selection.chosen == CHOSEN_BASE else kept
        lines = [f"- **`model/` is {kept}**: {selection.verdict}"]
        if metrics.significance:
            lines.append(f"- **Significance:** {_significance_verdict(metrics.significance)}")
        if metrics.seen_unseen:
            lines.append(f"- **Seen vs unseen queries:** {metrics.seen_unseen.get('verdict')}")
        lines += [f"- **⚠ forgetting** on {self._drop(extra)}" for extra in metrics.extra_reports if extra.forgetting]
        if metrics.pair_diagnostics:
            parts = [_pair_verdict(label, metrics.pair_diagnostics.get(key)) for key, label in _PAIR_MODELS]
            lines.append("- **Pair diagnostics:** " + "; ".join(part for part in parts if part))
        if not self.report.is_held_out:
            lines += ["", f"> **⚠ The figures below are on `{self.report.split}`, the {SELECTION_WARNING}:** it"]
            lines.append("> chose the checkpoint, so they are optimistic. Keep a test split for an honest estimate.")
        return [*lines, ""]

    def metric_section(self) -> list[str]:
        """Return the base vs fine-tuned table of every metric and its bar figure (with the primary's CI)."""
        base, tuned = self.report.base, self.report.fine_tuned
        names = [name for name in ordered_union(base, tuned) if not _DIMENSION_KEY.match(name)]
        where = "held-out test" if self.report.is_held_out else SELECTION_WARNING
        lines = [f"## Metrics on `{self.report.split}` ({where})", "", f"Primary metric: `{self.primary}`.", ""]
        lines += [*_table(["metric", "base", "fine-tuned", "Δ"], [_row(name, base, tuned) for name in names]), ""]
        sig, difference = self.metrics.significance or {}, None
        if all(is_number(sig.get(key)) for key in ("mean_diff", "ci_low", "ci_high")):
            difference = (str(sig.get("metric", self.primary)), sig["mean_diff"], sig["ci_low"], sig["ci_high"])
        picked = [{name: values[name] for name in names if name in values} for values in (base, tuned)]
        title = f"Base vs fine-tuned ({_split_label(self.report, short=True)})"
        return lines + (self.figure("metrics.png", "metric_bars", *picked, title, difference) if names else [])

    def significance_section(self) -> list[str]:
        """Return the paired comparison's figures (queries, means, interval, p-values, wins/losses/ties)."""
        sig = self.metrics.significance
        if not sig:
            return []
        rows = [[key, _number(sig.get(key))] for key in _SIGNIFICANCE_KEYS]
        rows.append(["wins / losses / ties", " / ".join(_number(sig.get(key)) for key in ("wins", "losses", "ties"))])
        title = f"## Significance ({sig.get('metric', self.primary)}, query by query; a = base, b = fine-tuned)"
        return [title, "", *_table(["figure", "value"], rows), ""]

    def seen_unseen_section(self) -> list[str]:
        """Return the comparison on seen queries (a relevant document was a training positive) and unseen ones."""
        record = self.metrics.seen_unseen
        if not isinstance(record, Mapping):
            return []
        groups = {group: record.get(group) for group in ("seen", "unseen") if isinstance(record.get(group), Mapping)}
        if not groups:
            return []
        metric = str(record.get("metric", self.primary))
        rows = [
            [
                group,
                _number(sig.get("queries")),
                *(_number(sig.get(key)) for key in ("mean_a", "mean_b", "mean_diff", "ci_low", "ci_high")),
                _number(sig.get("p_permutation")),
                " / ".join(_number(sig.get(key)) for key in ("wins", "losses", "ties")),
            ]
            for group, sig in groups.items()
        ]
        headers = ["queries", "n", "base", "fine-tuned", "Δ", "CI low", "CI high", "p", "wins / losses / ties"]
        lines = [f"## Seen vs unseen queries ({metric})", ""]
        lines += [
            "*Seen*: some relevant document was a training positive; *unseen*: none was. A gain on seen queries only",
            "means the model learned which documents are relevant rather than how to match new ones.",
            "",
            *_table(headers, rows),
            "",
        ]
        series = {
            label: {group: sig[key] for group, sig in groups.items() if is_number(sig.get(key))}
            for label, key in (("base", "mean_a"), ("fine-tuned", "mean_b"))
        }
        return lines + self.figure("seen_unseen.png", "compare_bars", series, f"{metric}: seen vs unseen queries")

    def per_query_section(self, per_query: Any) -> list[str]:
        """Return the histogram of per-query Δ nDCG@10 (Δ of the primary metric when nDCG@10 is not recorded)."""
        if not isinstance(per_query, dict):
            return []
        base, tuned = per_query.get("base"), per_query.get("fine_tuned")
        for metric in dict.fromkeys(("ndcg@10", self.primary)):
            pairs = [(_lookup(base, qid, metric), _lookup(tuned, qid, metric)) for qid in (base or {})]
            deltas = [b - a for a, b in pairs if a is not None and b is not None]
            if deltas:
                figure = self.figure("per_query_delta.png", "delta_histogram", deltas, metric)
                return [f"## Per-query Δ {metric} ({len(deltas)} queries)", "", *figure]
        return []

    def dimension_section(self) -> list[str]:
        """Return the primary metric at each Matryoshka dimension (``<primary>@<dim>d`` keys): table and figure."""
        matches = [_DIMENSION_KEY.match(key) for key in ordered_union(self.report.base, self.report.fine_tuned)]
        keys = sorted((int(m["dim"]), m[0]) for m in matches if m and m["metric"] == self.primary)
        if not keys:
            return []
        keys.append(("full", self.primary))
        base, tuned = self.report.base, self.report.fine_tuned
        rows = [_row(key, base, tuned, label=str(dim)) for dim, key in keys]
        lines = [f"## {self.primary} per Matryoshka dimension", ""]
        lines += [*_table(["dimensions", "base", "fine-tuned", "Δ"], rows), ""]
        values = [[str(dim) for dim, _ in keys]] + [[side.get(key) for _, key in keys] for side in (base, tuned)]
        return lines + self.figure("matryoshka.png", "dimension_curve", *values, self.primary)

    def score_section(self, distributions: Any) -> list[str]:
        """Return the cosine-score histograms of positive and negative pairs, base vs fine-tuned."""
        if not isinstance(distributions, dict):
            return []
        usable = {
            model: {kind: [v for v in groups.get(kind) or [] if is_number(v)] for kind in ("positive", "negative")}
            for model, groups in distributions.items()
            if isinstance(groups, dict)
        }
        if not any(scores for groups in usable.values() for scores in groups.values()):
            return []
        return ["## Score distributions", "", *self.figure("score_distributions.png", "score_histograms", usable)]

    def pair_section(self) -> list[str]:
        """Return the pair diagnostics table (threshold chosen on dev, figures on test), base and fine-tuned."""
        pairs = self.metrics.pair_diagnostics
        if not pairs:
            return []
        models = [(label, pairs.get(key) if isinstance(pairs.get(key), dict) else {}) for key, label in _PAIR_MODELS]
        rows = [[name, *(_number(values.get(name)) for _, values in models)] for name in PAIR_FIELDS]
        lines = ["## Pair diagnostics (threshold chosen on dev, figures on test)", ""]
        return [*lines, *_table(["", *(label for label, _ in models)], rows), ""]

    def forgetting_section(self) -> list[str]:
        """Return the forgetting check on each extra data set, then one warning line per flagged data set."""
        extras, primary = self.metrics.extra_reports, self.primary
        if not extras:
            return []
        rows = [
            [_escape(e.dataset), _escape(e.split), *_row(primary, e.base, e.fine_tuned)[1:3], format_metric(e.drop)]
            + ["**⚠ forgetting**" if e.forgetting else "no"]
            for e in extras
        ]
        header = ["dataset", "split", f"base {primary}", f"fine-tuned {primary}", "drop", "forgetting"]
        lines = [f"## Forgetting check ({primary} on other data sets)", "", *_table(header, rows), ""]
        warnings = [f"**⚠ forgetting** on {self._drop(extra)}  " for extra in extras if extra.forgetting]
        return lines + warnings + ([""] if warnings else [])

    def training_section(self) -> list[str]:
        """Return the selection figures, then the loss, learning-rate and dev-metric curves."""
        s, metrics = self.metrics.selection, self.metrics
        rows = [["chosen", s.chosen], ["step", _number(s.step)], ["base dev", _number(s.base_dev)]]
        rows += [["best dev", _number(s.best_dev)], ["Δ dev", format_delta(0.0, s.delta)]]
        lines = [f"## Selection (dev {self.primary}) and training", "", *_table(["selection", "value"], rows), ""]
        if not metrics.loss_history and not metrics.dev_history:
            return lines
        args = (metrics.loss_history, metrics.dev_history, self.primary, s.step)
        return lines + self.figure("training.png", "training_curves", *args)

    def _drop(self, extra: Any) -> str:
        """Return ``dataset (split): ndcg@10 0.4000 → 0.3500 (drop 0.0500)``."""
        base, tuned = (format_metric(side.get(self.primary)) for side in (extra.base, extra.fine_tuned))
        return f"`{extra.dataset}` ({extra.split}): {self.primary} {base} → {tuned} (drop {format_metric(extra.drop)})"


def _significance_verdict(sig: Mapping[str, Any]) -> str:
    """Return the recorded verdict line, or one built from the recorded figures."""
    if isinstance(sig.get("verdict"), str):
        return sig["verdict"]
    low, high, diff = (format_delta(0.0, sig.get(key)) for key in ("ci_low", "ci_high", "mean_diff"))
    outcome = "significant" if sig.get("significant") else "not significant"
    return f"{sig.get('metric')} {diff} (95% CI {low} … {high}), p {_number(sig.get('p_permutation'))}: {outcome}"


def _pair_verdict(label: str, values: Any) -> str:
    """Return ``fine-tuned PASS (ROC AUC 0.8123, min 0.7000; F1 0.7456, min 0.7000; at cosine ≥ 0.5123)``."""
    if not isinstance(values, dict):
        return ""
    keys = ("roc_auc", "f1", "min_auc", "min_f1", "threshold")
    auc, f1, min_auc, min_f1, cut = (_number(values.get(key)) for key in keys)
    outcome = "PASS" if values.get("passed") else "FAIL"
    return f"{label} {outcome} (ROC AUC {auc}, min {min_auc}; F1 {f1}, min {min_f1}; at cosine ≥ {cut})"


def _row(name: str, base: Mapping[str, Any], tuned: Mapping[str, Any], label: str | None = None) -> list[str]:
    """Return ``[label, base, fine-tuned, Δ]`` with 4 decimals (``-`` where not recorded)."""
    pair = (base.get(name), tuned.get(name))
    return [label or name, format_metric(pair[0]), format_metric(pair[1]), format_delta(*pair)]


def _number(value: Any) -> str:
    """Format a table cell: a count as is, a flag as pass/fail, any other number with 4 decimals, else ``-``."""
    if isinstance(value, bool):
        return "pass" if value else "**fail**"
    return str(value) if isinstance(value, int) else format_metric(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Return the lines of a Markdown table."""
    return ["| " + " | ".join(cells) + " |" for cells in (headers, ["---"] * len(headers), *rows)]


def _escape(text: str) -> str:
    """Return ``text`` safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _lookup(per_query: Any, qid: str, metric: str) -> float | None:
    """Return ``per_query[qid][metric]`` when it is a number, else ``None``."""
    values = per_query.get(qid) if isinstance(per_query, dict) else None
    value = values.get(metric) if isinstance(values, dict) else None
    return value if is_number(value) else None
