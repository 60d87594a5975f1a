"""Parsing setting values by the type of their setting: text from YAML or overrides, typed values from JSON."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from embedtune.errors import ConfigError, shorten

_NONE_WORDS = frozenset({"none", "null", "~"})
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
_INT = re.compile(r"[+-]?[0-9]+")
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_KINDS = {bool: "true/false/yes/no/on/off/1/0", int: "an integer", float: "a number", str: "a string"}
_KINDS[list] = "a list of strings (or one comma-separated string)"


def _setting(default: Any, help: str, default_factory: Any = None) -> Any:
    """Declare a dataclass field with its ``--help`` text in ``metadata["help"]``."""
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _label(text: str, limit: int = 80) -> str:
    """``text`` itself when short and printable, else its capped repr (for keys and paths in messages)."""
    return text if len(text) <= limit and text.isprintable() else shorten(text, limit)


def _describe(value: Any) -> str:
    return "a mapping" if isinstance(value, Mapping) else "a list" if isinstance(value, list) else shorten(value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_fields(obj: Any, prefix: str) -> None:
    """Parse every field of a config dataclass by its type (idempotent on typed values; builds nested sections)."""
    for name, hint in _hints(type(obj)).items():
        setattr(obj, name, _coerce(getattr(obj, name), hint, prefix + name))


def _unknown(key: str, part: Any, cls: type, section: str) -> ConfigError:
    known = sorted(_hints(cls))
    close = difflib.get_close_matches(part, known, n=1) if isinstance(part, str) and len(part) < 100 else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    where = f"in {section}" if section else "top-level"
    return ConfigError(f"{_label(key)}: unknown setting {shorten(part)}{hint} (known {where}: {', '.join(known)})")


def _number(value: Any, hint: type, key: str) -> int | float:
    """Parse an int or float setting strictly: finite, no bool, a float for an int only if integral."""
    text = value.strip() if isinstance(value, str) else ""
    if hint is int and _INT.fullmatch(text):
        _require(len(text) < 1000, key, f"integer too large, got {shorten(value)}")
        return int(text)
    ok = isinstance(value, int | float) and not isinstance(value, bool) or bool(_FLOAT.fullmatch(text))
    ok = ok or bool(_NON_FINITE.fullmatch(text))  # refused below as not finite
    _require(ok, key, f"expected {_KINDS[hint]}, got {_describe(value)}")
    number = float(text) if isinstance(value, str) else value
    if hint is float or isinstance(number, float):
        number = float(number) if isinstance(number, float) or abs(number) < 2**1000 else math.inf
        _require(math.isfinite(number), key, f"must be a finite number, got {shorten(value)}")
    if hint is int and isinstance(number, float):
        _require(number.is_integer(), key, f"expected an integer, got {shorten(value)}")
        return int(number)
    return number


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Parse one value (text from YAML or an override, or a typed JSON value) by the type of its setting."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:  # X | None
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        hint = next(arg for arg in args if arg is not type(None))
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else section_from_dict({} if value is None else value, hint, key + ".")
    if typing.get_origin(hint) is list:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        _require(isinstance(value, list), key, f"expected {_KINDS[list]}, got {_describe(value)}")
        return [_coerce(item, typing.get_args(hint)[0], key) for item in value]
    if hint is bool:
        word = value.strip().lower() if isinstance(value, str) else str(value) if type(value) is int else None
        _require(
            isinstance(value, bool) or word in _BOOL_WORDS, key, f"expected {_KINDS[bool]}, got {_describe(value)}"
        )
        return value if isinstance(value, bool) else _BOOL_WORDS[word]
    if hint in (int, float):
        return _number(value, hint, key)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # a JSON number for a text setting
    _require(isinstance(value, str), key, f"expected {_KINDS[str]}, got {_describe(value)}")
    return value


def _coerce_tree(data: Any, cls: type, prefix: str) -> dict[str, Any]:
    """Check the keys of nested dicts against ``cls`` and parse every setting by type, into new nested dicts."""
    _require(
        isinstance(data, Mapping), prefix[:-1] or "config", f"expected a mapping of settings, got {_describe(data)}"
    )
    hints, result = _hints(cls), {}
    for name, value in data.items():
        if name not in hints:
            raise _unknown(f"{prefix}{name}", name, cls, prefix[:-1])
        section = dataclasses.is_dataclass(hints[name])
        key = f"{prefix}{name}"
        value = {} if section and value is None else value
        result[name] = _coerce_tree(value, hints[name], key + ".") if section else _coerce(value, hints[name], key)
    return result


def section_from_dict(data: dict[str, Any], cls: type, prefix: str = "") -> Any:
    """Build a config dataclass from nested dicts, parsing each value by the type of its setting.

    A text value is parsed by type: a ``str`` setting takes it literally, ``int``/``float`` strictly (finite; ``"3.0"``
    is 3 for an int), ``bool`` from true/false/yes/no/on/off/1/0, ``list[str]`` comma-separated, and an optional
    setting takes none/null/~ as None. Typed values (as from JSON) are checked the same way. A None section is empty.

    Args:
        data: Nested mapping, e.g. ``{"train": {"learning_rate": "3e-5"}}``.
        cls: The dataclass to build (a section, or the whole config).
        prefix: Dotted path of ``data`` inside the whole config (for messages), e.g. ``"train."``.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: for an unknown key, a value of the wrong type, or a value that fails validation; the message
            starts with the dotted key.
    """
    return cls(**_coerce_tree(data, cls, prefix))
