"""Typed access to the fields of a decoded JSON object, raising :class:`RunRecordError` on the first bad one."""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from embedtune.errors import shorten
from embedtune.io import json_type_name
from embedtune.runs.errors import RunRecordError


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or a float (bools excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an int (bools excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


class FieldReader:
    """Reads the fields of one JSON object of a record file, checking each one's type.

    Missing keys and ``null`` are the same thing for nullable fields. Keys the schema does not know are ignored,
    so that a newer writer's extra fields do not make a record unreadable.

    Args:
        data: The decoded JSON value that must be an object.
        path: The file it came from (named in errors).
        prefix: Dotted name of ``data`` inside the file (``""`` for the top level).

    Raises:
        RunRecordError: if ``data`` is not a JSON object.
    """

    def __init__(self, data: Any, path: Path, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix
        if not isinstance(data, dict):
            self._fail(None, f"must be a JSON object, got {json_type_name(data)}")
        self.data: dict[str, Any] = data

    def string(self, key: str, *, choices: Collection[str] | None = None) -> str:
        """Return the string at ``key``; with ``choices``, it must be one of them.

        Raises:
            RunRecordError: if the field is missing, not a string, or not one of ``choices``.
        """
        value = self._required(key)
        if not isinstance(value, str):
            self._wrong_type(key, "a string", value)
        if choices is not None and value not in choices:
            self._fail(key, f"must be one of {', '.join(sorted(choices))}; got {shorten(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        """Return the string at ``key``, or ``None`` when it is missing or null.

        Raises:
            RunRecordError: if the field holds something other than a string or null.
        """
        return None if self.data.get(key) is None else self.string(key)

    def timestamp(self, key: str) -> str:
        """Return the ISO-8601 timestamp string at ``key``, as written.

        Raises:
            RunRecordError: if the field is missing, not a string, or not an ISO-8601 date and time.
        """
        value = self.string(key)
        try:
            datetime.fromisoformat(value)
        except ValueError:
            self._fail(key, f"must be an ISO-8601 date and time; got {shorten(value)}")
        return value

    def optional_timestamp(self, key: str) -> str | None:
        """Like :meth:`timestamp`, but ``None`` when the field is missing or null."""
        return None if self.data.get(key) is None else self.timestamp(key)

    def integer(self, key: str, *, minimum: int | None = None) -> int:
        """Return the integer at ``key``, at least ``minimum`` when given.

        Raises:
            RunRecordError: if the field is missing, not an integer, or below ``minimum``.
        """
        value = self._required(key)
        if not is_integer(value):
            self._wrong_type(key, "an integer", value)
        if minimum is not None and value < minimum:
            self._fail(key, f"must be at least {minimum}; got {value}")
        return value

    def optional_integer(self, key: str, *, minimum: int | None = None) -> int | None:
        """Like :meth:`integer`, but ``None`` when the field is missing or null."""
        return None if self.data.get(key) is None else self.integer(key, minimum=minimum)

    def number(self, key: str) -> float:
        """Return the number (int or float; NaN allowed) at ``key``.

        Raises:
            RunRecordError: if the field is missing or not a number.
        """
        value = self._required(key)
        if not is_number(value):
            self._wrong_type(key, "a number", value)
        return value

    def non_negative(self, key: str) -> float:
        """Return the finite number >= 0 at ``key`` (a duration, a memory size).

        Raises:
            RunRecordError: if the field is missing, not a number, not finite or negative.
        """
        value = self.number(key)
        if not math.isfinite(value) or value < 0:
            self._fail(key, f"must be a finite number >= 0; got {value}")
        return value

    def obj(self, key: str) -> dict[str, Any]:
        """Return the free-form JSON object at ``key`` (nested values are not checked).

        Raises:
            RunRecordError: if the field is missing or not an object.
        """
        value = self._required(key)
        if not isinstance(value, dict):
            self._wrong_type(key, "a JSON object", value)
        return value

    def boolean(self, key: str) -> bool:
        """Return the boolean at ``key``.

        Raises:
            RunRecordError: if the field is missing or not true/false.
        """
        value = self._required(key)
        if not isinstance(value, bool):
            self._wrong_type(key, "true or false", value)
        return value

    def optional_obj(self, key: str) -> dict[str, Any] | None:
        """Return the free-form JSON object at ``key``, or ``None`` when the field is absent or null.

        Raises:
            RunRecordError: if the field is present and neither null nor an object.
        """
        if self.data.get(key) is None:
            return None
        return self.obj(key)

    def nested(self, key: str) -> FieldReader:
        """Return a reader for the JSON object at ``key``.

        Raises:
            RunRecordError: if the field is missing or not an object.
        """
        return FieldReader(self.obj(key), self.path, self._dotted(key))

    def string_map(self, key: str) -> dict[str, str]:
        """Return the object at ``key`` whose values must all be strings (package versions, file hashes).

        Raises:
            RunRecordError: if the field is missing, not an object, or one of its values is not a string.
        """
        values = self.nested(key)
        return {name: values.string(name) for name in values.data}

    def number_map(self, key: str) -> dict[str, float]:
        """Return the object at ``key`` whose values must all be numbers (metric name -> value).

        Raises:
            RunRecordError: if the field is missing, not an object, or one of its values is not a number.
        """
        values = self.nested(key)
        return {name: values.number(name) for name in values.data}

    def count_map(self, key: str) -> dict[str, int]:
        """Return the object at ``key`` whose values must all be integers >= 0 (split name -> size).

        Raises:
            RunRecordError: if the field is missing, not an object, or one of its values is not a count.
        """
        values = self.nested(key)
        return {name: values.integer(name, minimum=0) for name in values.data}

    def history(self, key: str, required: Collection[str]) -> list[dict[str, float]]:
        """Return the array at ``key`` of objects holding numbers only, each with every key in ``required``.

        ``"step"`` must be an integer >= 0 in every entry; the other values are numbers.

        Raises:
            RunRecordError: if the field is missing, not an array, or an entry is not an object of numbers with the
                required keys.
        """
        items = self._required(key)
        if not isinstance(items, list):
            self._wrong_type(key, "an array", items)
        entries = []
        for index, item in enumerate(items):
            entry = FieldReader(item, self.path, f"{self._dotted(key)}[{index}]")
            for name in required:
                entry._required(name)
            if "step" in entry.data:
                entry.integer("step", minimum=0)
            entries.append({name: entry.number(name) for name in entry.data})
        return entries

    def _required(self, key: str) -> Any:
        if key not in self.data:
            self._fail(key, "is missing")
        return self.data[key]

    def _wrong_type(self, key: str, expected: str, value: Any) -> NoReturn:
        self._fail(key, f"must be {expected}, got {json_type_name(value)} {shorten(value)}")

    def _dotted(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _fail(self, key: str | None, problem: str) -> NoReturn:
        field = self._dotted(key) if key is not None else (self.prefix or None)
        raise RunRecordError(self.path, field, problem)


def curriculum_field(fields: FieldReader) -> dict[str, Any] | None:
    """Read and check the optional ``curriculum`` schedule (absent in runs without a curriculum)."""
    if fields.data.get("curriculum") is None:
        return None
    schedule = fields.nested("curriculum")
    schedule.string("source")
    phases = schedule._required("phases")
    if not isinstance(phases, list):
        schedule._wrong_type("phases", "an array", phases)
    for index, item in enumerate(phases):
        phase = FieldReader(item, fields.path, f"curriculum.phases[{index}]")
        phase.string("name")
        phase.integer("examples", minimum=0)
        steps = phase.data.get("steps")
        if steps is not None and not (isinstance(steps, list) and len(steps) == 2 and all(map(is_integer, steps))):
            phase._wrong_type("steps", "[first, last] integers or null", steps)
    return schedule.data


def trainable_parameters_field(fields: FieldReader) -> dict[str, Any] | None:
    """Read and check the optional ``trainable_parameters`` counts (absent in runs made before they were kept)."""
    if fields.data.get("trainable_parameters") is None:
        return None
    counts = fields.nested("trainable_parameters")
    counts.integer("trainable", minimum=0)
    counts.integer("total", minimum=0)
    counts.string("mode")
    return counts.data
