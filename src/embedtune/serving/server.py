"""``embedtune serve``: check the address and the API key, open the index with its model, run the API on uvicorn.

The server binds 127.0.0.1 unless told otherwise. Any other address (another machine could reach it) needs an API
key file; the key is then checked on every request (:func:`embedtune.serving.app.create_app`). Everything is checked
before the model loads: the address, the key file, the index folder; an index whose recorded model differs from
``--model`` is refused by :meth:`~embedtune.search.retriever.Retriever.load`.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from embedtune.errors import ConfigError
from embedtune.io import read_text
from embedtune.search.index import load_index
from embedtune.search.retriever import Retriever
from embedtune.serving.app import MAX_BATCH, MAX_TOP_K, create_app

logger = logging.getLogger(__name__)

LOCALHOST = "localhost"


@dataclass
class ServeSettings:
    """What ``embedtune serve`` was asked.

    Attributes:
        index_dir: The index folder (``embedtune index build``).
        host: Address to bind; loopback (127.0.0.1, ::1, localhost) unless an API key is given.
        port: TCP port.
        api_key_file: File whose first line is the API key, or ``None``.
        model: Model to encode queries with (it must be the index's); ``None``: the model ``index.json`` records.
        max_top_k: Largest ``top_k`` a request may ask for.
        max_batch: Most queries or texts per request.
    """

    index_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    api_key_file: Path | None = None
    model: str | None = None
    max_top_k: int = MAX_TOP_K
    max_batch: int = MAX_BATCH


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    if host == LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def read_api_key(path: Path) -> str:
    """Return the API key in ``path``: its first line, stripped.

    Raises:
        ConfigError: naming the file when it is empty or its first line is blank, or shorter than 16 characters.
        OSError: if the file cannot be read.
    """
    lines = read_text(path).splitlines()
    key = lines[0].strip() if lines else ""
    if len(key) < 16:
        raise ConfigError(f"{path}: line 1: the API key must be at least 16 characters, got {len(key)}")
    return key


def check_settings(settings: ServeSettings) -> str | None:
    """Check the address, the limits and the key file; return the API key (``None`` without a file).

    Raises:
        ConfigError: for a non-loopback address without ``--api-key-file``, a port outside 1-65535, a limit below 1,
            or a bad key file.
    """
    if not 0 < settings.port < 65536:
        raise ConfigError(f"--port: must be in 1-65535, got {settings.port}")
    if settings.max_top_k < 1 or settings.max_batch < 1:
        raise ConfigError("--max-top-k and --max-batch must be at least 1")
    if settings.api_key_file is None:
        if not is_loopback(settings.host):
            raise ConfigError(
                f"--host {settings.host}: other machines could reach it; give --api-key-file FILE (a key of 16 or "
                "more characters, checked on every request) or bind 127.0.0.1"
            )
        return None
    return read_api_key(settings.api_key_file)


def build_server_app(settings: ServeSettings) -> FastAPI:
    """Check everything, then open the index with its model and return the FastAPI app.

    Raises:
        ConfigError: see :func:`check_settings`.
        embedtune.search.index.IndexFileError: naming the file, for a missing or corrupt index folder (before the
            model loads).
        embedtune.search.encoding.ModelMismatchError: if ``settings.model`` is not the model the index was built with.
        embedtune.model_paths.ModelNotFoundError: if the model cannot be found.
    """
    api_key = check_settings(settings)
    load_index(settings.index_dir)  # a bad index stops here, before the model loads
    retriever = Retriever.load(settings.index_dir, model=settings.model, progress=False)
    return create_app(
        retriever,
        api_key=api_key,
        max_top_k=settings.max_top_k,
        max_batch=settings.max_batch,
        index_label=str(settings.index_dir),
    )


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` for uvicorn, so that an address in use stops the command before the model loads.

    Args:
        host: Address or host name to listen on (its first address is used).
        port: TCP port, 1-65535.

    Returns:
        The bound (not yet listening) socket, inheritable; uvicorn listens on it (``Server.run(sockets=...)``).

    Raises:
        ConfigError: naming the address, if it cannot be bound (in use, not an address of this machine, ...).
    """
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
    except OSError as error:
        raise ConfigError(f"--host {host}: not an address to listen on ({error.strerror or error})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT can be reused
        sock.bind(info[4])
    except OSError as error:
        sock.close()
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error})") from None
    sock.set_inheritable(True)
    return sock


def serve(settings: ServeSettings) -> None:
    """Serve the index until interrupted (Ctrl-C), on uvicorn.

    Raises:
        See :func:`build_server_app` and :func:`bind_listening_socket` (an address in use: before the model loads).
    """
    check_settings(settings)
    sock = bind_listening_socket(settings.host, settings.port)
    try:
        app = build_server_app(settings)
        docs = "" if settings.api_key_file is not None else " (docs: /docs)"
        logger.info("Serving %s on http://%s:%d%s", settings.index_dir, settings.host, settings.port, docs)
        # log_config=None: uvicorn's loggers go to embedtune's console (its access lines with -v, warnings always)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
