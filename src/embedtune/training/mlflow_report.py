"""Training logs to MLflow (``train.report_to: [tensorboard, mlflow]``) through transformers' ``MLflowCallback``.

transformers' callback does the logging (the trainer's arguments as parameters, each logged loss, learning rate and
dev figure as a metric at its step; ``@`` in a name becomes ``_``: ``eval_dev_ndcg_10``); it reads its settings from
environment variables when training starts. :class:`RunMLflowCallback` gives it embedtune's instead:

* the tracking URI: ``train.mlflow_tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else a local SQLite store,
  ``sqlite:///<runs_dir>/mlflow.db`` (``mlflow ui --backend-store-uri`` that URI shows it);
* the experiment: ``$MLFLOW_EXPERIMENT_NAME``, else the run's study (``embedtune tune``), else ``embedtune``;
* the MLflow run is named after the run folder and tagged with its path, embedtune's settings are logged as
  ``embedtune.<setting>`` parameters, and its id is kept in the run folder (``mlflow_run.json``), so a resumed run
  logs to the same MLflow run.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers.integrations import MLflowCallback

from embedtune.config import ConfigError, ExperimentConfig
from embedtune.io import write_json_atomic

MLFLOW = "mlflow"
DEFAULT_EXPERIMENT = "embedtune"
DB_FILE = "mlflow.db"
RUN_ID_FILE = "mlflow_run.json"
MAX_PARAM_CHARS = 250
"""MLflow refuses parameter values longer than this (in characters); longer settings are cut."""


def check_mlflow(config: ExperimentConfig) -> None:
    """Check that MLflow is installed when ``train.report_to`` names it.

    Raises:
        ConfigError: ``train.report_to: mlflow needs MLflow: pip install 'embedtune[mlflow]'``; before any model
            loads or any run folder exists.
    """
    if MLFLOW in config.train.report_to and importlib.util.find_spec(MLFLOW) is None:
        raise ConfigError("train.report_to: mlflow needs MLflow: pip install 'embedtune[mlflow]' (or mlflow-skinny)")


def tracking_uri(config: ExperimentConfig) -> str:
    """Return the MLflow tracking URI of ``config``'s runs (see the module docstring for the order)."""
    if config.train.mlflow_tracking_uri:
        return config.train.mlflow_tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(config.runs_dir) / DB_FILE).resolve()}"


def experiment_name(config: ExperimentConfig) -> str:
    """Return the MLflow experiment of ``config``'s run: ``$MLFLOW_EXPERIMENT_NAME``, the study or ``embedtune``."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or config.study or DEFAULT_EXPERIMENT


def flat_settings(settings: dict[str, Any], prefix: str = "embedtune.") -> dict[str, str]:
    """Flatten nested settings into ``{"embedtune.train.learning_rate": "2e-05", ...}``, values cut to 250 chars."""
    flat: dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:MAX_PARAM_CHARS]
    return flat


@contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, remove) environment variables inside the block; restore them after."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        _set_environment(values)
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class RunMLflowCallback(MLflowCallback):
    """transformers' ``MLflowCallback`` with embedtune's tracking URI, experiment, run name, tags and settings.

    Args:
        config: The run's settings.
        folder: The run folder (its name names the MLflow run; ``mlflow_run.json`` keeps the MLflow run id).
    """

    def __init__(self, config: ExperimentConfig, folder: Path) -> None:
        super().__init__()
        self.config = config
        self.folder = folder

    def setup(self, args: Any, state: Any, model: Any) -> None:
        """Start (or, when resuming, reattach to) the MLflow run, then log embedtune's settings and tags."""
        if not state.is_world_process_zero:
            return super().setup(args, state, model)
        uri = tracking_uri(self.config)
        stored = self.folder / RUN_ID_FILE
        run_id = json.loads(stored.read_text(encoding="utf-8"))["run_id"] if stored.exists() else None
        tags = {"embedtune.run_folder": str(self.folder.resolve()), "mlflow.runName": self.folder.name}
        if self.config.study:
            tags["embedtune.study"] = self.config.study
        environment = {
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_EXPERIMENT_NAME": experiment_name(self.config),
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_TAGS": json.dumps(tags),
            "MLFLOW_NESTED_RUN": None,
            # resuming: the arguments were logged when the run started (MLflow refuses a parameter's new value)
            "MLFLOW_MAX_LOG_PARAMS": "0" if run_id is not None else None,
        }
        with _environment(environment):  # mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI: restored after
            self._ml_flow.set_tracking_uri(uri)  # always: another run in this process may have set another
            super().setup(args, state, model)
        active = self._ml_flow.active_run()
        if run_id is None and active is not None:
            write_json_atomic(stored, {"run_id": active.info.run_id, "tracking_uri": uri})
            self._log_settings()

    def _log_settings(self) -> None:
        items = list(flat_settings(self.config.to_dict()).items())
        for start in range(0, len(items), self._MAX_PARAMS_TAGS_PER_BATCH):
            self._ml_flow.log_params(dict(items[start : start + self._MAX_PARAMS_TAGS_PER_BATCH]))
