"""The cache folder's layout and upkeep: finding chunk files, last-use times, eviction, clearing, description.

Under the root: ``<fingerprint>/model.json`` (what the model was, for ``embedtune cache info``) and
``<fingerprint>/<role>/<chunk>.emb`` chunk files (:mod:`embedtune.cache.chunks`). Only folders named by a 64-hex
fingerprint and a role, and files with the cache's own suffixes, are ever touched, so a root pointed at a folder
holding other files never loses them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from embedtune.cache.chunks import CHUNK_SUFFIX, TEMP_SUFFIX, CorruptChunkError, read_chunk_header
from embedtune.io import write_json_atomic
from embedtune.model_paths import model_source

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "EMBEDTUNE_CACHE_DIR"
"""Environment variable naming the cache root (default ``~/.cache/embedtune/embeddings``)."""
ROLES = ("query", "document")
STALE_TEMP_SECONDS = 3600
"""A temporary file older than this is left over from a crash and is deleted by eviction."""
MODEL_FILE = "model.json"

_FINGERPRINT_DIR = re.compile(r"[0-9a-f]{64}")
_last_touch_ns = 0


def default_cache_dir() -> Path:
    """Return the cache root: ``$EMBEDTUNE_CACHE_DIR`` when set, else ``~/.cache/embedtune/embeddings``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or "~/.cache/embedtune/embeddings").expanduser()


def chunks_by_last_use(folder: Path) -> list[Path]:
    """Return the chunk files of one ``<fingerprint>/<role>`` folder, most recently used first (none if missing)."""
    return sorted((path for path in _files(folder) if path.name.endswith(CHUNK_SUFFIX)), key=_mtime_ns, reverse=True)


def touch(path: Path) -> None:
    """Mark a chunk as used now: its modification time, set in nanoseconds and increasing within a process.

    Raises:
        OSError: if the file vanished or cannot be changed.
    """
    global _last_touch_ns
    _last_touch_ns = max(time.time_ns(), _last_touch_ns + 1)
    os.utime(path, ns=(_last_touch_ns, _last_touch_ns))


def write_model_file(folder: Path, model: Any, fingerprint: str) -> None:
    """Write ``<fingerprint>/model.json`` (fingerprint, the folder or name the model came from, creation time) once.

    Raises:
        OSError: if it cannot be written.
    """
    if (folder / MODEL_FILE).is_file():
        return

    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(
        folder / MODEL_FILE, {"fingerprint": fingerprint, "source": model_source(model), "created": created}
    )


def evict_least_recently_used(root: Path, max_bytes: int) -> int:
    """Delete least recently used chunks until the chunk files total at most ``max_bytes``; drop stale temp files.

    Returns:
        Bytes freed.
    """
    freed = 0
    now = time.time()
    for path in _cache_files(root, include_temp=True):
        if path.name.endswith(TEMP_SUFFIX) and _age(path, now) > STALE_TEMP_SECONDS:
            path.unlink(missing_ok=True)
    chunks = sorted((stat.st_mtime_ns, stat.st_size, path) for path, _, _, stat in _scan(root))
    total = sum(size for _, size, _ in chunks)
    for _, size, path in chunks:
        if total <= max_bytes:
            break
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:
            logger.warning("Embedding cache: cannot evict %s: %s", path, error)
            continue
        total, freed = total - size, freed + size
    if freed:
        _remove_empty_folders(root)
    return freed


def clear_cache(root: Path) -> dict[str, int]:
    """Delete every chunk, leftover temporary file and ``model.json`` under ``root``, and their empty folders.

    Returns:
        ``{"files": files deleted, "bytes": their total size}``.
    """
    files = size = 0
    for path in list(_cache_files(root, include_temp=True)):
        try:
            stat = path.stat()
            path.unlink()
        except OSError:
            continue
        files, size = files + 1, size + stat.st_size
    _remove_empty_folders(root)
    return {"files": files, "bytes": size}


def describe_cache(root: Path, max_bytes: int) -> dict[str, Any]:
    """Describe the cache under ``root`` (reads chunk headers only); see :meth:`EmbeddingCache.info`."""
    models: dict[str, dict[str, Any]] = {}
    corrupt = chunks = 0
    for path, fingerprint, role, stat in _scan(root):
        chunks += 1
        model = models.setdefault(fingerprint, _model_entry(root / fingerprint, fingerprint))
        model["bytes"] += stat.st_size
        model["last_used"] = max(model["last_used"], stat.st_mtime)
        try:
            model["entries"][role] += read_chunk_header(path, fingerprint, role).rows
        except CorruptChunkError:
            corrupt += 1
        except OSError:
            continue
    ordered = sorted(models.values(), key=lambda model: -model["last_used"])
    for model in ordered:
        model["last_used"] = datetime.fromtimestamp(model["last_used"], timezone.utc).isoformat(timespec="seconds")
    return {
        "root": str(root),
        "max_bytes": max_bytes,
        "bytes": sum(model["bytes"] for model in ordered),
        "chunks": chunks,
        "entries": sum(sum(model["entries"].values()) for model in ordered),
        "fingerprints": len(ordered),
        "corrupt": corrupt,
        "models": ordered,
    }


def _scan(root: Path) -> Iterator[tuple[Path, str, str, os.stat_result]]:
    """Yield ``(path, fingerprint, role, stat)`` for every chunk file."""
    for path in _cache_files(root, include_temp=False):
        try:
            stat = path.stat()
        except OSError:
            continue
        if path.name.endswith(CHUNK_SUFFIX):
            yield path, path.parent.parent.name, path.parent.name, stat


def _cache_files(root: Path, include_temp: bool) -> Iterator[Path]:
    """Every file the cache wrote: chunks, and with ``include_temp`` temporary files and ``model.json`` files."""
    for folder in _subfolders(root):
        if not _FINGERPRINT_DIR.fullmatch(folder.name):
            continue
        if include_temp and (folder / MODEL_FILE).is_file():
            yield folder / MODEL_FILE
        for role_folder in _subfolders(folder):
            if role_folder.name not in ROLES:
                continue
            for path in _files(role_folder):
                if path.name.endswith(CHUNK_SUFFIX) or (include_temp and path.name.endswith(TEMP_SUFFIX)):
                    yield path


def _remove_empty_folders(root: Path) -> None:
    for folder in _subfolders(root):
        if not _FINGERPRINT_DIR.fullmatch(folder.name):
            continue
        for role_folder in _subfolders(folder):
            if role_folder.name in ROLES:
                _rmdir(role_folder)
        if [path.name for path in _files(folder)] == [MODEL_FILE] and not list(_subfolders(folder)):
            (folder / MODEL_FILE).unlink(missing_ok=True)
        _rmdir(folder)


def _model_entry(folder: Path, fingerprint: str) -> dict[str, Any]:
    try:
        source = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8")).get("source")
    except (OSError, ValueError, AttributeError):
        source = None
    entries = dict.fromkeys(ROLES, 0)
    return {"fingerprint": fingerprint, "source": source, "entries": entries, "bytes": 0, "last_used": 0.0}


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(path for path in folder.iterdir() if path.is_dir() and not path.is_symlink())
    except OSError:
        return []


def _files(folder: Path) -> list[Path]:
    try:
        return sorted(path for path in folder.iterdir() if path.is_file() and not path.is_symlink())
    except OSError:
        return []


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _age(path: Path, now: float) -> float:
    """Seconds since ``path`` was last modified (0 if it vanished)."""
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def _rmdir(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
