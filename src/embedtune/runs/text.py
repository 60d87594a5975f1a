"""Plain-text building blocks for ``embedtune runs``: tables, numbers, durations and config differences."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from embedtune.runs.validate import is_number

MISSING = "<missing>"
"""Shown in config differences for a key that one run does not have."""
NO_VALUE = "-"
"""Shown for a value that is absent or not a number."""


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
    return [(key, values[0], values[1]) for key, values in differing_settings([a, b])]


def differing_settings(configs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """``(dotted key, value per config)`` for each key whose value is not the same in every config.

    Args:
        configs: Nested configs, compared in order; a key missing from one has :data:`MISSING` there.

    Returns:
        The differing keys, in order of first appearance.
    """
    flats = [flatten_config(config) for config in configs]
    rows = [(key, [flat.get(key, MISSING) for flat in flats]) for key in ordered_union(*flats)]
    return [(key, values) for key, values in rows if any(value != values[0] for value in values[1:])]


def ordered_union(*mappings: Mapping[str, Any]) -> list[str]:
    """Union of the mappings' keys in order of first appearance."""
    return list(dict.fromkeys(name for values in mappings for name in values))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Left-aligned columns separated by two spaces, with a dashed rule under the header.

    Args:
        headers: Column titles.
        rows: Cells, one sequence per row, as many as ``headers``.
        indent: Prefix of every line.

    Returns:
        The table (no trailing newline); trailing spaces are stripped.
    """
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return indent + "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    rule = indent + "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def format_value(value: Any) -> str:
    """Strings as they are, everything else as JSON (``true``, ``null``, ``[1, 2]``)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def format_metric(value: Any) -> str:
    """Format a metric value with 4 decimals, or ``-`` when absent or not a number."""
    return f"{value:.4f}" if is_number(value) else NO_VALUE


def format_delta(base: Any, tuned: Any) -> str:
    """Signed difference ``tuned - base`` with 4 decimals, or ``-`` when either is absent."""
    return f"{tuned - base:+.4f}" if is_number(base) and is_number(tuned) else NO_VALUE


def format_epoch(epoch: Any) -> str:
    """Format an epoch with 2 decimals, or ``-``."""
    return f"{epoch:.2f}" if is_number(epoch) else NO_VALUE


def format_duration(seconds: Any) -> str:
    """Seconds as ``42.0s``, ``12m 05s`` or ``1h 02m 03s``; ``-`` when absent."""
    if not is_number(seconds):
        return NO_VALUE
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
