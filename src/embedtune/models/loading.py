"""Load SentenceTransformer models offline-first (names resolve through :mod:`embedtune.model_paths`)."""

from __future__ import annotations

from sentence_transformers import SentenceTransformer

from embedtune.model_paths import ModelNotFoundError, check_model_available


def load_model(name_or_path: str, max_seq_length: int | None = None, device: str | None = None) -> SentenceTransformer:
    """Load a sentence-transformers model by folder or name (see :func:`resolve_model_path`).

    Args:
        name_or_path: A model folder or name.
        max_seq_length: Truncation length in tokens; ``None`` keeps the model's own setting.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` lets sentence-transformers choose.

    Returns:
        The loaded model.

    Raises:
        ModelNotFoundError: if the name is not a local folder, not a packaged alias and cannot be fetched.
    """
    resolved = check_model_available(name_or_path)
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
