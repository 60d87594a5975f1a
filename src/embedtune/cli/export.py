"""``embedtune export RUN OUT [--merge]``: write a run's model as a standalone sentence-transformers folder."""

from __future__ import annotations

import argparse


def add_export_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune export``."""
    export = commands.add_parser(
        "export",
        help="Write a run's model as a standalone sentence-transformers folder.",
        description="Write the model of a finished run to OUT, a new folder that loads with "
        "SentenceTransformer(OUT) and needs neither peft nor the base model. A full or head run's model/ is copied. "
        "A LoRA run needs --merge: the export is the model with the adapter merged into its weights (the adapter "
        "alone stays in the run's adapter/ folder). OUT must not exist.",
    )
    export.add_argument("run", help="Run folder, folder name or run name.")
    export.add_argument("out", help="Folder to write (must not exist).")
    export.add_argument(
        "--merge", action="store_true", help="Merge a LoRA adapter into the weights (required for LoRA runs)."
    )
    export.add_argument("--runs-dir", default="runs", help="Where run names are looked up (default runs).")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export the run's model and print the folder written; returns the exit code."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.models.export import export_model

    print(export_model(args.run, args.out, merge=args.merge, runs_dir=args.runs_dir))
    return 0
