"""Console logging: one line per event on stderr, written through tqdm so progress bars stay intact."""

from __future__ import annotations

import logging
import os

from tqdm.auto import tqdm

CONSOLE_HANDLER_NAME = "embedtune-console"


class _TqdmHandler(logging.StreamHandler):
    """A stderr handler that writes through ``tqdm.write`` (a line printed under a live bar does not break it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise into the program
            self.handleError(record)


def configure_console_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Show embedtune's progress (INFO) and everyone's warnings on stderr; ``verbose`` adds the libraries' INFO.

    Calling it again replaces the previous console handler (never two lines per event). The root logger is set to
    INFO so that a run's ``train.log`` receives every library's messages either way. Under a launcher (``torchrun``,
    ``accelerate launch``), processes other than rank 0 show only warnings and errors, marked ``[rank N]``.

    Args:
        verbose: Also show other libraries' INFO messages.
        quiet: Show only warnings and errors.
    """
    rank = launcher_rank()

    def visible(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or (verbose and rank == 0):
            return True
        return record.name.startswith("embedtune") and not quiet and rank == 0

    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == CONSOLE_HANDLER_NAME]:
        root.removeHandler(existing)
    handler = _TqdmHandler()
    handler.set_name(CONSOLE_HANDLER_NAME)
    marker = f"[rank {rank}] " if rank else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s {marker}%(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(visible)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    _quiet_library_progress_bars()


def launcher_rank() -> int:
    """Return this process's rank as a launcher set it (``RANK``: torchrun, accelerate launch); 0 without one."""
    try:
        return max(int(os.environ.get("RANK", "0")), 0)
    except ValueError:
        return 0


def _quiet_library_progress_bars() -> None:
    """Hide transformers' per-file bars (loading weights, writing shards); training and encoding bars stay."""
    # transformers: only when a command runs, so `embedtune --help` starts fast
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
