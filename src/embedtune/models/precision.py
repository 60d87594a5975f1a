"""Which floating-point precision a model computes in: native bf16 detection and autocast for encoding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (the ``avx512_bf16`` or ``amx_bf16`` flag; Linux ``/proc/cpuinfo``).

    Args:
        cpuinfo: The text of ``/proc/cpuinfo``; read from the system when ``None`` (``False`` where unreadable).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def inference_dtype(precision: str, device_type: str) -> torch.dtype | None:
    """Return the autocast dtype encoding uses on ``device_type`` (``"cuda"``, ``"cpu"``...), or ``None`` for fp32.

    ``auto``: on CUDA, bf16 where the GPU supports it, else fp16; on a CPU with native bf16 (see
    :func:`cpu_has_native_bf16`), bf16; elsewhere fp32 (emulated bf16 is several times slower than fp32: 2.4 vs 18.3
    documents/s measured on a CPU without it). ``fp16`` on a CPU falls back to fp32.

    Raises:
        ValueError: for a precision outside :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return None
    if device_type == "cuda":
        if precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if device_type == "cpu":
        if precision == "auto":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        return torch.bfloat16 if precision == "bf16" else None
    return None


@contextlib.contextmanager
def inference_autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the block under autocast at :func:`inference_dtype`'s dtype for ``device`` (nothing for fp32).

    Weights stay in fp32; matrix products run in the lower precision. The embedding cache's fingerprint records the
    autocast state in force, so embeddings made at another precision are never mixed with these.
    """
    device_type = torch.device(device).type
    dtype = inference_dtype(precision, device_type)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type, dtype=dtype):
        yield
