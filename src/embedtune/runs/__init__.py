"""The run store: one place that writes (training) and reads (``embedtune runs``) run folders.

A run folder ``runs/<YYYYmmdd-HHMMSS>-<name>/`` holds ``run.json`` (a :class:`RunRecord`) and, once the run has
finished, ``metrics.json`` (a :class:`RunMetrics`). Training calls :func:`check_runs_dir` early, then
:func:`start_run` and :func:`finish_run` or :func:`fail_run`; ``embedtune runs`` calls :func:`find_runs`,
:func:`resolve_run`, :func:`load_run` and the ``format_run_*`` renderers.
"""

from embedtune.runs.errors import RunRecordError, RunStoreError
from embedtune.runs.folder import check_runs_dir, create_run_folder, git_commit, library_versions
from embedtune.runs.format import format_run_compare, format_run_list, format_run_show, split_label
from embedtune.runs.record import (
    CHOSEN_BASE,
    CHOSEN_FINE_TUNED,
    METRICS_FILE,
    RECORDED_STATUSES,
    ROLE_SELECTION,
    ROLE_TEST,
    RUN_FILE,
    STATUS_CORRUPT,
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    ExtraReport,
    Report,
    RunMetrics,
    RunRecord,
    Selection,
    read_run_metrics,
    read_run_record,
)
from embedtune.runs.store import RunInfo, find_runs, load_run, resolve_run
from embedtune.runs.text import MISSING, config_diff, flatten_config
from embedtune.runs.writer import MAX_ERROR_CHARS, fail_run, finish_run, start_run

__all__ = [
    "CHOSEN_BASE",
    "CHOSEN_FINE_TUNED",
    "MAX_ERROR_CHARS",
    "METRICS_FILE",
    "MISSING",
    "RECORDED_STATUSES",
    "ROLE_SELECTION",
    "ROLE_TEST",
    "RUN_FILE",
    "STATUS_CORRUPT",
    "STATUS_FAILED",
    "STATUS_FINISHED",
    "STATUS_INTERRUPTED",
    "STATUS_RUNNING",
    "ExtraReport",
    "Report",
    "RunInfo",
    "RunMetrics",
    "RunRecord",
    "RunRecordError",
    "RunStoreError",
    "Selection",
    "check_runs_dir",
    "config_diff",
    "create_run_folder",
    "fail_run",
    "find_runs",
    "finish_run",
    "flatten_config",
    "format_run_compare",
    "format_run_list",
    "format_run_show",
    "git_commit",
    "library_versions",
    "load_run",
    "read_run_metrics",
    "read_run_record",
    "resolve_run",
    "split_label",
    "start_run",
]
