"""``embedtune export RUN OUT [--merge] [--format onnx [--quantize int8]]``: a run's model as a standalone folder."""

from __future__ import annotations

import argparse

from embedtune.cli.encoding_options import add_batch_size_argument, add_cache_arguments, embedding_cache_of
from embedtune.export.options import ATTENTIONS, QUANTIZATIONS

FORMATS = ("st", "onnx")


def add_export_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune export``."""
    export = commands.add_parser(
        "export",
        help="Write a run's model as a standalone sentence-transformers or ONNX folder.",
        description="Write the model of a finished run to OUT, a new folder. --format st (default): a folder that "
        "loads with SentenceTransformer(OUT) and needs neither peft nor the base model; a full or head run's model/ "
        "is copied. --format onnx: the whole model (transformer, pooling, head, normalisation) as one ONNX graph run "
        "with onnxruntime, with its tokenizer, prompts and a manifest; --quantize int8 stores int8 weights. An ONNX "
        "export is checked before it is written, against the PyTorch model on the run's dev split: mean cosine "
        ">= 0.999 (int8: 0.99) and nDCG@10 at most 0.002 (int8: 0.01) lower, or it is refused with the figures. "
        "Every --model option (index build, search, eval, serve) accepts the ONNX folder. A LoRA run needs --merge: "
        "the export is the model with the adapter merged into its weights (the adapter alone stays in the run's "
        "adapter/ folder). OUT must not exist.",
    )
    export.add_argument("run", help="Run folder, folder name or run name.")
    export.add_argument("out", help="Folder to write (must not exist).")
    export.add_argument(
        "--merge", action="store_true", help="Merge a LoRA adapter into the weights (required for LoRA runs)."
    )
    export.add_argument(
        "--format", choices=FORMATS, default="st", help="st: sentence-transformers folder; onnx (default st)."
    )
    export.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        help="With --format onnx: int8 stores the weights as int8 (dynamic quantisation); none (default) keeps fp32.",
    )
    export.add_argument(
        "--attention",
        choices=ATTENTIONS,
        help="With --format onnx: fused (default) runs each layer's attention as onnxruntime's MultiHeadAttention "
        "where the model allows; traced keeps standard ONNX operators, for runtimes other than onnxruntime.",
    )
    export.add_argument(
        "--check-max-docs",
        type=int,
        help="With --format onnx: check on the judged documents plus a seeded sample, N in all, instead of the dev "
        "split's whole corpus (faster, easier to rank: a weaker check).",
    )
    add_batch_size_argument(export, " while checking")
    export.add_argument("--runs-dir", default="runs", help="Where run names are looked up (default runs).")
    add_cache_arguments(export)
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export the run's model and print the folder written (and an ONNX export's check); returns the exit code.

    Raises:
        ValueError: for ONNX-only options without --format onnx, or a bad --check-max-docs / --batch-size.
    """
    if args.format != "onnx" and (
        args.quantize not in (None, "none") or args.attention or args.check_max_docs is not None
    ):
        raise ValueError("--quantize, --attention and --check-max-docs apply to --format onnx only")
    if args.format == "st":
        # imports torch: only when the command runs, so `embedtune --help` starts fast
        from embedtune.export.folder import export_model

        print(export_model(args.run, args.out, merge=args.merge, runs_dir=args.runs_dir))
        return 0
    # imports torch and onnxruntime: only when the command runs
    from embedtune.export.onnx_export import export_onnx

    export = export_onnx(
        args.run,
        args.out,
        quantize=args.quantize or "none",
        merge=args.merge,
        runs_dir=args.runs_dir,
        check_max_docs=args.check_max_docs,
        batch_size=args.batch_size,
        cache=embedding_cache_of(args),
        attention=args.attention or "fused",
    )
    print(export.path)
    print(f"check passed {export.check.summary()}")
    return 0
