"""Resolving a configuration: defaults < YAML/JSON config file < ``section.key=value`` overrides."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from embedtune.config.sections import ExperimentConfig
from embedtune.config.values import (
    ConfigError,
    _coerce_tree,
    _describe,
    _hints,
    _label,
    _require,
    _unknown,
    section_from_dict,
)
from embedtune.errors import describe_os_error, shorten

_MAX_DEPTH = 32  # YAML nesting refused beyond this (a config is 3 levels deep)
MAX_CONFIG_BYTES = 1 << 20  # larger config files are refused unread


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build the whole configuration from nested dicts (see :func:`~embedtune.config.values.section_from_dict`).

    Raises:
        ConfigError: for an unknown key, a value of the wrong type, or a value that fails validation.
    """
    return section_from_dict(data, ExperimentConfig)


class _YamlLoader(yaml.BaseLoader):
    """BaseLoader (every scalar a string) reading ``key:`` as null, refusing duplicate keys and deep nesting."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {_MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_scalar(self, node: Any) -> Any:
        return None if node.style is None and node.value == "" else super().construct_scalar(node)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and (key.value in seen or seen.add(key.value)):
                problem = f"duplicate key {shorten(key.value)}"
                raise yaml.constructor.ConstructorError(None, None, problem, key.start_mark)
        return super().construct_mapping(node, deep)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    for key, count in collections.Counter(key for key, _ in pairs).items():
        _require(count == 1, "cannot parse JSON", f"duplicate key {shorten(key)}")
    return dict(pairs)


def _parse_text(text: str, is_json: bool) -> Any:
    """Parse config text; every failure becomes a ConfigError saying why (without the path)."""
    kind = "JSON" if is_json else "YAML"
    try:
        return json.loads(text, object_pairs_hook=_json_object) if is_json else yaml.load(text, Loader=_YamlLoader)
    except json.JSONDecodeError as error:
        raise ConfigError(f"cannot parse JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"cannot parse YAML: {str(error.problem or error.context)[:200]}{where}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse YAML: {' '.join(str(error).split())[:200]}") from None
    except RecursionError:
        raise ConfigError(f"cannot parse {kind}: nested too deeply") from None
    except ConfigError:
        raise
    except ValueError as error:  # e.g. an integer with more digits than Python converts
        raise ConfigError(f"cannot parse {kind}: {str(error)[:200]}") from None


def _read(path: Path) -> bytes:
    """Read a config file's bytes, or raise a ConfigError saying why not (without the path)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("is a folder, not a config file" if stat.S_ISDIR(info.st_mode) else "not a regular file")
        _require(info.st_size <= MAX_CONFIG_BYTES, "too large", f"over {MAX_CONFIG_BYTES} bytes")
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("config file not found") from None
    except OSError as error:
        raise ConfigError(f"cannot read: {describe_os_error(error)}") from None
    except ConfigError:
        raise
    except ValueError as error:  # e.g. a NUL in the path
        raise ConfigError(f"bad path: {error}") from None
    _require(len(raw) <= MAX_CONFIG_BYTES, "too large", f"over {MAX_CONFIG_BYTES} bytes")
    return raw


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into nested dicts, its keys checked and its values parsed by type.

    YAML is read with every scalar as text (``name: 007`` stays ``"007"``, ``flag: no`` is False only for a bool
    setting), then parsed like an override; ``.json`` files are read as JSON. Ranges are checked by
    :func:`config_from_dict`.

    Args:
        path: The file; a ``.json`` suffix (any case) means JSON, anything else YAML.

    Returns:
        Nested dicts of typed values: only the settings the file sets.

    Raises:
        ConfigError: one, starting with the path, for a missing or unreadable file, a folder, non-UTF-8 text, a
            syntax error, a duplicate key, too deep nesting, a top level that is not a mapping, an unknown key or a
            value of the wrong type.
    """
    text = os.fspath(path) if isinstance(path, str | os.PathLike) else repr(path)
    label = _label(text, 200)
    _require(isinstance(path, str | os.PathLike) and bool(text), "config file", f"bad path {label}")
    try:
        raw = _read(Path(path).expanduser())
        try:
            data = _parse_text(raw.decode("utf-8-sig"), Path(path).suffix.lower() == ".json")
        except UnicodeDecodeError as error:
            raise ConfigError(f"not UTF-8 text (bad byte at offset {error.start})") from None
        if not isinstance(data, Mapping):
            got = "an empty file" if data is None else _describe(data)
            raise ConfigError(f"expected a mapping of settings at the top level, got {got}")
        return _coerce_tree(data, ExperimentConfig, "")
    except ConfigError as error:
        raise ConfigError(f"{label}: {error}") from None


def _check_key(key: str, cls: type) -> list[str]:
    """Split a dotted override key, checking that it names one setting of ``cls``."""
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if part not in _hints(cls):
            raise _unknown(key, part, cls, ".".join(parts[:depth]))
        here, cls, last = ".".join(parts[: depth + 1]), _hints(cls)[part], depth == len(parts) - 1
        section = dataclasses.is_dataclass(cls)
        _require(not (section and last), _label(key), f"is a section, not a setting; set {here}.<key>=value")
        _require(section or last, _label(key), f"{here!r} is a setting, not a section")
    return parts


def apply_overrides(data: dict[str, Any], overrides: list[str], cls: type = ExperimentConfig) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to nested dicts, returning a copy; the values stay raw text.

    Each value is parsed later by the type of its setting (:func:`config_from_dict`), never as YAML: ``name=007``
    stays ``"007"`` and ``model.query_prefix=query: `` keeps its trailing space.

    Args:
        data: Nested settings (e.g. from :func:`load_config_file`); not modified.
        overrides: ``"section.key=value"`` strings, applied in order (a later one wins).
        cls: The config dataclass whose keys are accepted.

    Returns:
        A copy of ``data`` with the overrides set.

    Raises:
        ConfigError: for an override without ``=`` or key, an unknown key (listing the known keys of its section), a
            key naming a section or going below a setting, or a section of ``data`` that is not a mapping.
    """
    ok = isinstance(overrides, list | tuple)
    _require(ok, "overrides", f"expected a list of 'section.key=value' strings, got {_describe(overrides)}")
    _require(isinstance(data, Mapping), "config", f"expected a mapping of settings, got {_describe(data)}")
    result = dict(data)
    for override in overrides:
        key, sep, raw = override.partition("=") if isinstance(override, str) else ("", "", "")
        _require(bool(sep and key.strip()), f"override {shorten(override)}", "expected section.key=value")
        *parents, leaf = _check_key(key.strip(), cls)
        node = result
        for depth, parent in enumerate(parents):
            child = {} if node.get(parent) is None else node[parent]
            where = ".".join(parents[: depth + 1])
            _require(isinstance(child, Mapping), where, f"expected a mapping of settings, got {_describe(child)}")
            node[parent] = dict(child)
            node = node[parent]
        node[leaf] = raw
    return result


def build_config(config_file: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Resolve a config: defaults, then the file (if any), then the overrides.

    Args:
        config_file: YAML or JSON file (see :func:`load_config_file`), or None.
        overrides: ``section.key=value`` strings (see :func:`apply_overrides`).

    Returns:
        The validated config.

    Raises:
        ConfigError: for an unreadable config file or any invalid setting.
    """
    data = load_config_file(config_file) if config_file is not None else {}
    return config_from_dict(apply_overrides(data, overrides or []))
