"""Read training-run folders and render them for ``embedtune runs list``, ``runs show`` and ``runs compare``.

A run folder is ``runs/<YYYYmmdd-HHMMSS>-<name>/`` holding ``training_config.json`` (written when training starts)
and ``metrics.json`` (written when it ends). A folder without ``metrics.json`` is a run still training or one that
crashed; it is reported with status ``"incomplete"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "training_config.json"
METRICS_FILE = "metrics.json"
MISSING = "<missing>"
"""Shown in config differences for a key that one run does not have."""

STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"
_NO_VALUE = "-"


@dataclass
class RunInfo:
    """What a run folder records about one training run.

    Attributes:
        path: The run folder.
        name: Run name from ``training_config.json`` (the folder name when absent).
        created: ISO-8601 creation time as recorded (empty when absent).
        config: Nested dict of every resolved setting.
        metrics: Parsed ``metrics.json``, or ``None`` while the run is incomplete.
        status: ``"complete"`` when ``metrics.json`` exists, otherwise ``"incomplete"``.
        versions: Package name -> version string.
        data_hashes: Data file path (relative) -> sha256 hex digest.
        git_commit: Commit the run was trained from, or ``None`` when unknown.
    """

    path: Path
    name: str
    created: str
    config: dict[str, Any]
    metrics: dict[str, Any] | None
    status: str
    versions: dict[str, Any] = field(default_factory=dict)
    data_hashes: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None

    @property
    def folder(self) -> str:
        """The run folder's name, e.g. ``"20240501-103000-msmarco-small"``."""
        return self.path.name

    @property
    def base_model(self) -> str | None:
        """``config["model"]["name_or_path"]``, or ``None`` when the config does not record it."""
        value = _dig(self.config, "model", "name_or_path")
        return None if value is None else str(value)

    @property
    def primary_metric(self) -> str | None:
        """The metric the run selected checkpoints by (``metrics["primary_metric"]``), or ``None``."""
        value = _dig(self.metrics, "primary_metric")
        return None if value is None else str(value)

    def test_metrics(self, model: str) -> dict[str, float]:
        """Test-split figures of one model.

        Args:
            model: ``"base"`` or ``"fine_tuned"``.

        Returns:
            Metric name -> value; empty when the run has no such figures.
        """
        values = _dig(self.metrics, "test", model)
        return dict(values) if isinstance(values, Mapping) else {}


def load_run(path: str | Path) -> RunInfo:
    """Read one run folder.

    Args:
        path: The run folder (holding ``training_config.json`` and, once finished, ``metrics.json``).

    Returns:
        The run's :class:`RunInfo`; ``metrics`` is ``None`` and ``status`` ``"incomplete"`` without ``metrics.json``.

    Raises:
        FileNotFoundError: if ``training_config.json`` does not exist in ``path``.
        ValueError: if ``training_config.json`` or ``metrics.json`` is not valid JSON or not a JSON object.
    """
    folder = Path(path)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: {folder} is not a run folder")
    record = _read_json_object(config_path)
    metrics_path = folder / METRICS_FILE
    metrics = _read_json_object(metrics_path) if metrics_path.is_file() else None
    return RunInfo(
        path=folder,
        name=str(record.get("name") or folder.name),
        created=str(record.get("created") or ""),
        config=_as_dict(record.get("config")),
        metrics=metrics,
        status=STATUS_INCOMPLETE if metrics is None else STATUS_COMPLETE,
        versions=_as_dict(record.get("versions")),
        data_hashes=_as_dict(record.get("data_hashes")),
        git_commit=record.get("git_commit"),
    )


def find_runs(root: str | Path = "runs") -> list[RunInfo]:
    """Read every run folder directly under ``root``.

    Args:
        root: Folder holding run folders.

    Returns:
        Runs sorted by folder name (which starts with a timestamp, so oldest first). Sub-folders without
        ``training_config.json`` are skipped; a missing ``root`` gives an empty list.

    Raises:
        ValueError: if a run folder holds a JSON file that cannot be parsed.
    """
    return [load_run(folder) for folder in _run_folders(Path(root))]


def resolve_run(ref: str, root: str | Path = "runs") -> Path:
    """Turn a user's reference to a run into its folder.

    Tried in order: ``ref`` as a path to a run folder; an exact folder name under ``root``; a folder whose name is
    ``<timestamp>-<ref>`` (the run name); a folder name ending with ``ref``; a folder name containing ``ref``. The
    first of these that matches exactly one folder wins.

    Args:
        ref: Path, folder name, run name, or a unique suffix or substring of a folder name.
        root: Folder holding run folders.

    Returns:
        The run folder's path.

    Raises:
        ValueError: if ``ref`` is empty, matches no run, or matches several runs at the same step (the message
            lists the candidates).
    """
    if not ref:
        raise ValueError("empty run reference")
    as_path = Path(ref)
    if (as_path / CONFIG_FILE).is_file():
        return as_path
    folders = _run_folders(Path(root))
    for matches in _match_tiers(ref, folders):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(folder.name for folder in matches)
            raise ValueError(f"run reference {ref!r} is ambiguous; candidates: {names}")
    available = ", ".join(folder.name for folder in folders) or "none"
    raise ValueError(f"no run matches {ref!r} (as a path or under {root}); available runs: {available}")


def flatten_config(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested dict into dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``.

    Args:
        d: Nested mapping; non-mapping values (lists included) are leaves. An empty nested mapping is kept as a
            leaf ``{}`` so that it still shows up.
        prefix: Prepended to every key (``"<prefix>.<key>"``).

    Returns:
        Dotted key -> leaf value, in the mapping's order.
    """
    flat: dict[str, Any] = {}
    for key, value in d.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, dotted))
        else:
            flat[dotted] = value
    return flat


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """List the settings that differ between two nested configs.

    Args:
        a: First config (nested).
        b: Second config (nested).

    Returns:
        ``(dotted key, value in a, value in b)`` for each differing key, in ``a``'s order then ``b``'s extra keys;
        a key present on one side only has :data:`MISSING` on the other.
    """
    return [(key, values[0], values[1]) for key, values in _differing_settings([a, b])]


def format_run_list(runs: Sequence[RunInfo]) -> str:
    """Render runs as a plain-text table, one line per run.

    Columns: run folder, status, base model, primary test metric as ``name base -> fine-tuned (delta)``, wall time.

    Args:
        runs: Runs to show, in the order given.

    Returns:
        The table (no trailing newline), or a one-line message when ``runs`` is empty.
    """
    if not runs:
        return "No runs found."
    headers = ["RUN", "STATUS", "BASE MODEL", "PRIMARY TEST METRIC (BASE -> FINE-TUNED)", "WALL TIME"]
    rows = [
        [run.folder, run.status, run.base_model or _NO_VALUE, _primary_summary(run), _format_duration(_wall_time(run))]
        for run in runs
    ]
    return _format_table(headers, rows)


def format_run_show(run: RunInfo) -> str:
    """Render everything a run records: settings, versions, data hashes, test metrics, checkpoints, dev history.

    Args:
        run: The run to show.

    Returns:
        Multi-section plain text (no trailing newline).
    """
    sections = [
        _header_section(run),
        _config_section(run),
        _key_value_section("Versions", run.versions),
        _key_value_section("Data hashes", run.data_hashes),
    ]
    if run.metrics is None:
        sections.append(f"Metrics: none yet ({METRICS_FILE} missing: the run is still training or it crashed)")
    else:
        sections += [_test_metrics_section(run), _best_checkpoint_line(run), _dev_history_section(run)]
        sections.append(_timing_section(run))
    return "\n\n".join(sections)


def format_run_compare(runs: Sequence[RunInfo]) -> str:
    """Render two or more runs side by side: their config differences, fine-tuned test metrics and wall time.

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


# --- reading -----------------------------------------------------------------------------------------------------


def _read_json_object(path: Path) -> dict[str, Any]:
    """Parse a JSON file that must hold an object; ValueError naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def _as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a dict, else an empty dict."""
    return value if isinstance(value, dict) else {}


def _dig(data: Any, *keys: str) -> Any:
    """Follow ``keys`` through nested mappings; ``None`` as soon as one is missing or a value is not a mapping."""
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _run_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` that hold ``training_config.json``, sorted by name."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / CONFIG_FILE).is_file()), key=lambda p: p.name)


def _match_tiers(ref: str, folders: Sequence[Path]) -> Iterable[list[Path]]:
    """Candidate folders for ``ref``, from the strictest way of matching to the loosest."""
    yield [f for f in folders if f.name == ref]
    yield [f for f in folders if f.name.endswith(f"-{ref}")]
    yield [f for f in folders if f.name.endswith(ref)]
    yield [f for f in folders if ref in f.name]


# --- formatting helpers ------------------------------------------------------------------------------------------


def _format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Left-aligned columns separated by two spaces, with a dashed rule under the header."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return indent + "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    rule = indent + "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _format_value(value: Any) -> str:
    """Strings as they are, everything else as JSON (``true``, ``null``, ``[1, 2]``)."""
    if value == MISSING or isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _format_metric(value: Any) -> str:
    """Format a metric value with 4 decimals, or ``-`` when absent or not a number."""
    return f"{value:.4f}" if _is_number(value) else _NO_VALUE


def _format_delta(base: Any, tuned: Any) -> str:
    """Signed difference ``tuned - base`` with 4 decimals, or ``-`` when either is absent."""
    return f"{tuned - base:+.4f}" if _is_number(base) and _is_number(tuned) else _NO_VALUE


def _is_number(value: Any) -> bool:
    """Whether ``value`` is an int or float (bools excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format_duration(seconds: Any) -> str:
    """Seconds as ``42.0s``, ``12m 05s`` or ``1h 02m 03s``; ``-`` when absent."""
    if not _is_number(seconds):
        return _NO_VALUE
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _wall_time(run: RunInfo) -> Any:
    """``metrics["wall_time_s"]`` or ``None``."""
    return _dig(run.metrics, "wall_time_s")


def _primary_summary(run: RunInfo) -> str:
    """``ndcg@10 0.3000 -> 0.3500 (+0.0500)`` for the run's primary metric, or ``-``."""
    metric = run.primary_metric
    if metric is None:
        return _NO_VALUE
    base, tuned = run.test_metrics("base").get(metric), run.test_metrics("fine_tuned").get(metric)
    if base is None and tuned is None:
        return _NO_VALUE
    return f"{metric} {_format_metric(base)} -> {_format_metric(tuned)} ({_format_delta(base, tuned)})"


def _ordered_union(*mappings: Mapping[str, Any]) -> list[str]:
    """Union of the dicts' keys in order of first appearance."""
    return list(dict.fromkeys(name for values in mappings for name in values))


# --- show sections -----------------------------------------------------------------------------------------------


def _header_section(run: RunInfo) -> str:
    """Identity lines of a run: folder, name, creation time, status, commit."""
    return "\n".join(
        [
            f"Run: {run.folder}",
            f"Path: {run.path}",
            f"Name: {run.name}",
            f"Created: {run.created or _NO_VALUE}",
            f"Status: {run.status}",
            f"Base model: {run.base_model or _NO_VALUE}",
            f"Git commit: {run.git_commit or 'unknown'}",
        ]
    )


def _config_section(run: RunInfo) -> str:
    """``Config:`` followed by one ``a.b.c = value`` line per setting."""
    flat = flatten_config(run.config)
    lines = [f"  {key} = {_format_value(value)}" for key, value in flat.items()] or ["  (empty)"]
    return "\n".join(["Config:", *lines])


def _key_value_section(title: str, values: Mapping[str, Any]) -> str:
    """``<title>:`` followed by one ``key = value`` line per entry."""
    lines = [f"  {key} = {_format_value(value)}" for key, value in values.items()] or ["  (none recorded)"]
    return "\n".join([f"{title}:", *lines])


def _test_metrics_section(run: RunInfo) -> str:
    """Table of test metrics: base | fine-tuned | delta per metric."""
    base, tuned = run.test_metrics("base"), run.test_metrics("fine_tuned")
    split = _dig(run.metrics, "eval_split") or "test"
    names = _ordered_union(base, tuned)
    if not names:
        return f"Test metrics ({split} split): none recorded"
    rows = [
        [
            name,
            _format_metric(base.get(name)),
            _format_metric(tuned.get(name)),
            _format_delta(base.get(name), tuned.get(name)),
        ]
        for name in names
    ]
    table = _format_table(["METRIC", "BASE", "FINE-TUNED", "DELTA"], rows, indent="  ")
    return f"Test metrics ({split} split, primary: {run.primary_metric or _NO_VALUE}):\n{table}"


def _best_checkpoint_line(run: RunInfo) -> str:
    """``Best checkpoint: step N (metric = value, ...)`` or a note that there is none."""
    best = _dig(run.metrics, "best_checkpoint")
    if not isinstance(best, Mapping):
        return "Best checkpoint: none"
    scores = ", ".join(f"{key} = {_format_metric(value)}" for key, value in best.items() if key != "step")
    return f"Best checkpoint: step {best.get('step', _NO_VALUE)}" + (f" ({scores})" if scores else "")


def _dev_history_section(run: RunInfo) -> str:
    """Table of the dev evaluations made during training: step, epoch, then each metric."""
    history = [entry for entry in _dig(run.metrics, "dev_history") or [] if isinstance(entry, Mapping)]
    if not history:
        return "Dev history: none"
    names = [name for name in _ordered_union(*history) if name not in ("step", "epoch")]
    rows = [
        [str(entry.get("step", _NO_VALUE)), _format_epoch(entry.get("epoch"))]
        + [_format_metric(entry.get(name)) for name in names]
        for entry in history
    ]
    return "Dev history:\n" + _format_table(["STEP", "EPOCH", *names], rows, indent="  ")


def _format_epoch(epoch: Any) -> str:
    """Epoch with 2 decimals, or ``-``."""
    return f"{epoch:.2f}" if _is_number(epoch) else _NO_VALUE


def _timing_section(run: RunInfo) -> str:
    """Wall time, training time and peak memory lines."""
    peak = _dig(run.metrics, "peak_memory_mb")
    return "\n".join(
        [
            f"Wall time: {_format_duration(_wall_time(run))}",
            f"Train time: {_format_duration(_dig(run.metrics, 'train_time_s'))}",
            f"Peak memory: {f'{peak:.1f} MB' if _is_number(peak) else _NO_VALUE}",
        ]
    )


# --- compare sections --------------------------------------------------------------------------------------------


def _runs_header(runs: Sequence[RunInfo]) -> str:
    """Numbered list of the compared runs with their status."""
    lines = [f"  [{index}] {run.folder} ({run.status})" for index, run in enumerate(runs, start=1)]
    return "\n".join(["Runs:", *lines])


def _differing_settings(configs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """``(dotted key, value per config)`` for each key whose value is not the same in every config."""
    flats = [flatten_config(config) for config in configs]
    keys = _ordered_union(*flats)
    rows = [(key, [flat.get(key, MISSING) for flat in flats]) for key in keys]
    return [(key, values) for key, values in rows if any(value != values[0] for value in values[1:])]


def _config_compare_section(runs: Sequence[RunInfo]) -> str:
    """Table of the settings that differ between the runs, one column per run."""
    differences = _differing_settings([run.config for run in runs])
    if not differences:
        return "Config differences: none"
    headers = ["SETTING", *(f"[{index}]" for index in range(1, len(runs) + 1))]
    rows = [[key, *(_format_value(value) for value in values)] for key, values in differences]
    return "Config differences:\n" + _format_table(headers, rows, indent="  ")


def _metrics_compare_section(runs: Sequence[RunInfo]) -> str:
    """Fine-tuned test metrics per run next to the first run's base model, then wall time per run."""
    reference = runs[0].test_metrics("base")
    tuned = [run.test_metrics("fine_tuned") for run in runs]
    names = _ordered_union(reference, *tuned)
    headers = ["METRIC", "BASE [1]", *(f"[{index}]" for index in range(1, len(runs) + 1))]
    rows = [
        [name, _format_metric(reference.get(name)), *(_format_metric(t.get(name)) for t in tuned)] for name in names
    ]
    rows.append(["wall time", _NO_VALUE, *(_format_duration(_wall_time(run)) for run in runs)])
    return "Fine-tuned test metrics:\n" + _format_table(headers, rows, indent="  ")
