"""``embedtune serve INDEX``: answer search and embedding requests over HTTP (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedtune.cli.evaluate import resolve_model_reference


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune serve``."""
    serve = commands.add_parser(
        "serve",
        help="Serve a search index over HTTP: POST /search, POST /embed, GET /health, GET /info.",
        description="Open INDEX with the model it was built with and answer JSON requests: POST /search "
        '({"query": "...", "top_k": 10} or {"queries": [...]}), POST /embed ({"texts": [...], "role": "query" | '
        '"document"}), GET /health, GET /info; interactive docs at /docs. Binds 127.0.0.1 unless --host says '
        "otherwise; any other address needs --api-key-file (checked on every request: 'Authorization: Bearer KEY' "
        "or 'X-API-Key: KEY'). Requests above --max-top-k or --max-batch get 422.",
    )
    serve.add_argument("index", metavar="INDEX", help="Index folder written by 'embedtune index build'.")
    serve.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000).")
    serve.add_argument("--api-key-file", help="File whose first line is the API key (16+ characters).")
    serve.add_argument("--model", help="Model to encode with (folder, name or run); default: the index's own.")
    serve.add_argument("--runs-dir", default="runs", help="Where run names are looked up (default runs).")
    serve.add_argument("--max-top-k", type=int, default=100, help="Largest top_k a request may ask for (100).")
    serve.add_argument("--max-batch", type=int, default=64, help="Most queries or texts per request (64).")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; returns the exit code."""
    # imports torch, FastAPI and uvicorn: only when the command runs
    from embedtune.serving.server import ServeSettings, serve

    model = resolve_model_reference(args.model, args.runs_dir) if args.model else None
    settings = ServeSettings(
        index_dir=Path(args.index).expanduser(),
        host=args.host,
        port=args.port,
        api_key_file=Path(args.api_key_file).expanduser() if args.api_key_file else None,
        model=model,
        max_top_k=args.max_top_k,
        max_batch=args.max_batch,
    )
    serve(settings)
    return 0
