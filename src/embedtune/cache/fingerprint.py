"""An exact fingerprint of what a model computes: SHA-256 over its weights and its encoding settings.

Two models share a fingerprint only when every parameter and buffer is bit-identical (same names, dtypes, shapes and
bytes, in ``state_dict`` order) and every setting that changes an embedding is equal: the module classes and their
configs (the Pooling mode, a Dense layer, a Normalize module...), ``max_seq_length``, the prompts, ``truncate_dim``,
the output dimension, the tokenizer and an enclosing autocast (mixed precision). Unlike the index fingerprint of
:mod:`embedtune.search.encoding` (the embedding of one fixed sentence, compared with a tolerance across devices),
this one is exact: it keys stored embeddings, so any change must miss. The device is not part of it: embeddings made
on a GPU are reused on a CPU (they differ by float rounding only).

**Memoisation rule.** Hashing every weight costs about 50 ms per 100 MB on a CPU, so the weight digest is remembered
per model object and reused while a cheap *probe* of the weights is unchanged. The probe is recomputed on every call
and records, for every tensor, its name, device, dtype, shape, storage address, autograd version counter and the sum
of its bytes read as 32-bit integers (computed where the tensor lives; about 10 ms per 100 MB on a CPU, far less on a
GPU). Any optimizer step, ``load_state_dict``, in-place edit, ``.to(...)``, replaced tensor or write through
``.data`` changes the probe (short of changes to one tensor whose word deltas cancel out exactly, which real updates
never produce), so a model being trained never gets a stale fingerprint. (The version counter alone is
not enough: fused AdamW and writes through ``.data`` do not bump it.) The one change the probe cannot see is an
in-place rearrangement that keeps every tensor's word sum, e.g. swapping two weights through ``.data``; call
:func:`model_fingerprint` with ``refresh=True`` after such surgery. The settings are read afresh on every call,
except the tokenizer's digest, remembered per tokenizer object while its size (``len(tokenizer)``) is unchanged
(``refresh=True`` recomputes it too).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
import weakref
from pathlib import PurePath
from typing import Any

import numpy as np
import torch
from torch import nn

FINGERPRINT_FORMAT = 1
"""Bumped whenever what the fingerprint covers changes, so that older cache entries stop matching."""

_memo: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()
_tokenizer_memo: weakref.WeakKeyDictionary[Any, tuple[int | None, str]] = weakref.WeakKeyDictionary()
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def model_fingerprint(model: nn.Module, refresh: bool = False) -> str:
    """Return the fingerprint of a model: what it would embed, as 64 lowercase hex characters.

    Args:
        model: A loaded model (a ``SentenceTransformer``, or any ``torch.nn.Module``).
        refresh: Rehash the weights even when the probe (see the module docstring) says they are unchanged.

    Returns:
        SHA-256 hex digest over :data:`FINGERPRINT_FORMAT`, the weight digest and :func:`fingerprint_settings`.

    Raises:
        ValueError: if the model holds no tensor (e.g. an ONNX or OpenVINO backend), since two such models could not
            be told apart.
    """
    digest = hashlib.sha256(f"embedtune-model-fingerprint-{FINGERPRINT_FORMAT}\n".encode())
    if refresh:
        forget_fingerprint(model)
    digest.update(_weights_digest(model, refresh).encode())
    digest.update(json.dumps(fingerprint_settings(model), sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def forget_fingerprint(model: nn.Module) -> None:
    """Drop the memoised weight and tokenizer digests of ``model``, so that :func:`model_fingerprint` rehashes them."""
    _memo.pop(model, None)
    try:
        _tokenizer_memo.pop(getattr(model, "tokenizer", None), None)
    except TypeError:  # no tokenizer, or one that cannot be weakly referenced (never memoised)
        pass


def fingerprint_settings(model: nn.Module) -> dict[str, Any]:
    """Collect the encoding settings that change a model's embeddings (everything but the weights).

    Args:
        model: A loaded model; attributes a plain module lacks are recorded as ``None``.

    Returns:
        JSON-serialisable dict: ``model_class``, ``modules`` (one ``{"class", "config"}`` per module, in order, with
        each module's ``get_config_dict()`` and its ``do_lower_case``), ``max_seq_length``, ``prompts``,
        ``default_prompt_name``, ``truncate_dim``, ``dimension`` (output dimension), ``normalize`` (a ``Normalize``
        module is present), ``pooling`` (the first ``Pooling`` module's config or ``None``), ``tokenizer``
        (SHA-256 of the tokenizer's serialised vocabulary and rules, or ``None``) and ``autocast`` (the mixed-precision
        dtype in force where this is called, per device type: embeddings computed under autocast differ).
    """
    modules = list(model.children()) if hasattr(model, "encode") else []
    described = [_describe_module(module) for module in modules]
    pooling = next((entry["config"] for entry in described if entry["class"].endswith(".Pooling")), None)
    dimension = None
    if hasattr(model, "get_embedding_dimension"):
        dimension = model.get_embedding_dimension()
    return _jsonable(
        {
            "model_class": _class_name(model),
            "modules": described,
            "max_seq_length": getattr(model, "max_seq_length", None),
            "prompts": dict(getattr(model, "prompts", None) or {}),
            "default_prompt_name": getattr(model, "default_prompt_name", None),
            "truncate_dim": getattr(model, "truncate_dim", None),
            "dimension": dimension,
            "normalize": any(type(module).__name__ == "Normalize" for module in modules),
            "pooling": pooling,
            "tokenizer": _tokenizer_digest(getattr(model, "tokenizer", None)),
            "autocast": _autocast_state(),
        }
    )


def _autocast_state() -> dict[str, str | None]:
    """Return the mixed-precision dtype in force per device type (``None`` when off): it changes embeddings too."""
    state: dict[str, str | None] = {}
    for device_type in ("cpu", "cuda"):
        try:
            enabled = torch.is_autocast_enabled(device_type)
            state[device_type] = str(torch.get_autocast_dtype(device_type)) if enabled else None
        except (RuntimeError, TypeError, AttributeError):  # an older torch without per-device queries
            state[device_type] = None
    return state


def _describe_module(module: nn.Module) -> dict[str, Any]:
    config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
    return {"class": _class_name(module), "config": config, "do_lower_case": getattr(module, "do_lower_case", None)}


def _class_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _weights_digest(model: nn.Module, refresh: bool) -> str:
    """SHA-256 hex over every state_dict tensor (name, dtype, shape, bytes), memoised behind the probe."""
    tensors = [(name, value) for name, value in model.state_dict(keep_vars=True).items() if torch.is_tensor(value)]
    if not tensors:
        raise ValueError(
            f"cannot fingerprint a {type(model).__name__} without weight tensors (e.g. an ONNX or OpenVINO backend)"
        )
    probe = tuple(_probe(name, value.detach()) for name, value in tensors)
    remembered = None if refresh else _memo.get(model)
    if remembered is not None and remembered[0] == probe:
        return remembered[1]
    digest = hashlib.sha256()
    for name, value in tensors:
        data = _bytes(value.detach())
        digest.update(json.dumps([name, str(value.dtype), list(value.shape), data.nbytes]).encode("utf-8"))
        digest.update(data)
    _memo[model] = (probe, digest.hexdigest())
    return _memo[model][1]


def _probe(name: str, tensor: torch.Tensor) -> tuple:
    """Identify one tensor's state cheaply: its storage, version counter and the sum of its 32-bit words."""
    try:
        version = tensor._version
    except RuntimeError:  # inference tensors have no version counter; the word sum still covers them
        version = None
    flat = tensor.reshape(-1).view(torch.uint8)
    if flat.numel() % 4:
        words = flat.to(torch.int32)
    else:
        words = flat if flat.storage_offset() % 4 == 0 else flat.clone()
        words = words.view(torch.int32)
    if words.device.type == "cpu":
        total = int(words.numpy().sum(dtype=np.int64))
    else:
        total = int(words.sum(dtype=torch.int64))
    return (name, str(tensor.device), str(tensor.dtype), tuple(tensor.shape), tensor.data_ptr(), version, total)


def _bytes(tensor: torch.Tensor) -> memoryview:
    """Return the tensor's bytes in row-major order, copied to the CPU when it lives elsewhere."""
    flat = tensor.reshape(-1).contiguous().view(torch.uint8)
    return memoryview(flat.cpu().numpy()).cast("B")


def _tokenizer_digest(tokenizer: Any) -> str | None:
    """SHA-256 of the tokenizer's vocabulary and rules, memoised per tokenizer object while its size is unchanged."""
    if tokenizer is None:
        return None
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else None
    try:
        remembered = _tokenizer_memo.get(tokenizer)
    except TypeError:  # not weak-referenceable
        remembered = None
    if remembered is not None and remembered[0] == size:
        return remembered[1]
    digest = _hash_tokenizer(tokenizer)
    try:
        _tokenizer_memo[tokenizer] = (size, digest)
    except TypeError:
        pass
    return digest


def _hash_tokenizer(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        # The backend's truncation and padding are set by each call (the length is covered by max_seq_length).
        rules = json.loads(backend.to_str())
        text = json.dumps({key: value for key, value in rules.items() if key not in ("truncation", "padding")})
    elif hasattr(tokenizer, "get_vocab"):
        text = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    else:
        text = repr(tokenizer)
    extra = {"class": _class_name(tokenizer), "lower": getattr(tokenizer, "do_lower_case", None)}
    payload = _ADDRESS.sub("", text) + json.dumps(extra, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _jsonable(value: Any) -> Any:
    """Turn a config value into plain JSON data that is stable across processes (no memory addresses)."""
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(item) for item in value), key=repr)
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    return _ADDRESS.sub("", repr(value))
