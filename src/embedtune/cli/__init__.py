"""The ``embedtune`` command line: one subcommand module per verb, registered below.

Verbs: train, tune, eval, runs, report, demo, index, search, serve, cache, prepare, mine, data, doctor.

Every user error (bad data, a bad setting, a file that cannot be read or written, a model that cannot be found) is
printed as one line ``error: ...`` with exit code 2, never as a traceback. A failure after a run folder exists is
recorded in the run and exits with 1; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import functools
import sys

from embedtune.cli import cache, data, evaluate, mine, prepare, report, runs, search, train
from embedtune.cli.console import configure_console_logging
from embedtune.cli.doctor import add_doctor_command
from embedtune.cli.export import add_export_command
from embedtune.cli.serve import add_serve_command
from embedtune.cli.tune import add_tune_command
from embedtune.errors import describe_os_error
from embedtune.versions import version_line

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit code: 0 success, 1 a run failed after it started, 2 bad input or settings, 130 interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, or argparse's own one-line usage error
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_BAD_INPUT
    configure_console_logging(verbose=args.verbose, quiet=args.quiet)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place that turns errors into messages
        if args.traceback:
            raise
        print(f"error: {describe_error(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT if is_user_error(error) else EXIT_FAILED


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is about the user's input (data, settings, files, model name) rather than a failed run."""
    return isinstance(error, ValueError | OSError)


def describe_error(error: BaseException) -> str:
    """One line for an error: the message as raised, or for an OS error the file and the reason."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {describe_os_error(error)}"
    message = str(error).strip() or type(error).__name__
    if not isinstance(error, ValueError | OSError) and not type(error).__module__.startswith("embedtune"):
        message = f"{type(error).__name__}: {message}"
    return " ".join(message.splitlines()) if len(message) < 2000 else message[:2000] + "..."


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every sub-command (each has ``--help``); built once per process."""
    parser = argparse.ArgumentParser(prog="embedtune", description="Fine-tune and evaluate text-embedding models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Also log the libraries' progress.")
    parser.add_argument("-q", "--quiet", action="store_true", help="Log only warnings and errors.")
    parser.add_argument("--traceback", action="store_true", help="Show the full traceback of an error (debugging).")
    parser.add_argument(
        "--version", action=_VersionAction, help="Print embedtune's version and the key libraries' versions."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train.add_train_command(commands)
    evaluate.add_eval_command(commands)
    runs.add_runs_command(commands)
    report.add_report_command(commands)
    train.add_demo_command(commands)
    search.add_index_command(commands)
    search.add_search_command(commands)
    cache.add_cache_command(commands)
    data.add_data_command(commands)
    prepare.add_prepare_command(commands)
    mine.add_mine_command(commands)
    add_export_command(commands)
    add_tune_command(commands)
    add_serve_command(commands)
    add_doctor_command(commands)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: print :func:`embedtune.versions.version_line` and exit 0 (read only when asked for)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values, option_string=None):

        print(version_line())
        parser.exit()


if __name__ == "__main__":
    sys.exit(main())
