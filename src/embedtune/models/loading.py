"""Load SentenceTransformer models offline-first (names resolve through :mod:`embedtune.model_paths`)."""

from __future__ import annotations

from sentence_transformers import SentenceTransformer

from embedtune.config import ExperimentConfig
from embedtune.model_paths import ModelNotFoundError, check_model_available, is_onnx_export
from embedtune.models.onnx_backend import load_onnx_model
from embedtune.models.prompts import set_prompts

BACKENDS = ("auto", "torch", "onnx")
"""How a model runs: ``torch`` (a sentence-transformers folder or name), ``onnx`` (an ``embedtune export --format
onnx`` folder, run with onnxruntime), ``auto`` (``onnx`` for an ONNX export folder, else ``torch``)."""


def load_model(
    name_or_path: str, max_seq_length: int | None = None, device: str | None = None, backend: str = "auto"
) -> SentenceTransformer:
    """Load a sentence-transformers model by folder or name (see :func:`resolve_model_path`), or an ONNX export.

    Args:
        name_or_path: A model folder or name, or an ONNX export folder.
        max_seq_length: Truncation length in tokens; ``None`` keeps the model's own setting.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` lets sentence-transformers choose. An ONNX export runs on the CPU.
        backend: One of :data:`BACKENDS`.

    Returns:
        The loaded model (for an ONNX export, see :func:`embedtune.models.onnx_backend.load_onnx_model`).

    Raises:
        ModelNotFoundError: if the name is not a local folder, not a packaged alias and cannot be fetched, or if
            ``backend`` is ``onnx`` and the folder is no ONNX export.
        ValueError: for an unknown backend, ``backend="torch"`` with an ONNX export, or an ONNX export on a GPU.
        ImportError: for an ONNX export without onnxruntime installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    resolved = check_model_available(name_or_path)
    if is_onnx_export(resolved):
        return _load_onnx(name_or_path, resolved, max_seq_length, device, backend)
    if backend == "onnx":
        raise ModelNotFoundError(
            f"{name_or_path}: not an ONNX export; make one with 'embedtune export RUN OUT --format onnx' "
            "or drop --backend onnx"
        )
    try:
        model = SentenceTransformer(resolved, device=device)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(
            f"model '{name_or_path}' was not found as a local folder and could not be loaded from the hub "
            f"(no network?). Pass the path of a sentence-transformers model folder instead. Cause: {error}"
        ) from error
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def _load_onnx(
    name_or_path: str, folder: str, max_seq_length: int | None, device: str | None, backend: str
) -> SentenceTransformer:
    if backend == "torch":
        raise ValueError(f"{name_or_path}: an ONNX export runs with --backend onnx (or auto), not torch")
    if device is not None and not device.startswith("cpu"):
        raise ValueError(f"{name_or_path}: an ONNX export runs on the CPU (onnxruntime), not on {device}")
    return load_onnx_model(folder, max_seq_length)


def load_base_model(config: ExperimentConfig, device: str | None = None) -> SentenceTransformer:
    """Load a run's base model with the configured sequence length and the configured prefixes as its prompts.

    Args:
        config: The run settings (``model.name_or_path``, ``model.max_seq_length``, the prefixes).
        device: As in :func:`load_model`; ``None`` lets sentence-transformers choose.

    Returns:
        The base model, with ``prompts`` ``{"query": ..., "document": ...}`` for the non-empty prefixes.

    Raises:
        ModelNotFoundError: if the model cannot be found or loaded.
    """
    model = load_model(config.model.name_or_path, config.model.max_seq_length, device)
    set_prompts(model, config.model.query_prefix, config.model.passage_prefix)
    return model
