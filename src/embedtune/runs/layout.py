"""The run folder's layout: the one place that names every file and folder a run leaves.

``runs/<YYYYmmdd-HHMMSS>-<name>/`` holds :data:`RUN_FILE` (settings, status, versions), :data:`METRICS_FILE`
(figures, selection verdict, history), :data:`PER_QUERY_FILE` and :data:`SCORE_DISTRIBUTIONS_FILE` (the reported
split per query, both models), :data:`REPORT_FILE` and :data:`FIGURES_DIR` (the human-readable report),
:data:`MODEL_DIR` (the selected model), :data:`ADAPTER_DIR` (a LoRA run's adapter alone), :data:`TRAIN_LOG_FILE`,
:data:`TENSORBOARD_DIR`, and while it runs :data:`CHECKPOINTS_DIR` (removed when it finishes; ``--resume`` needs
them until then). Every writer of these lives in :mod:`embedtune.runs` (:mod:`~embedtune.runs.writer` for the
records, :mod:`~embedtune.runs.outputs` for models and per-query files); the report is rendered by
:mod:`embedtune.evaluation.run_report` (it draws figures) into the paths named here.
"""

from __future__ import annotations

RUN_FILE = "run.json"
"""The run's settings, status, data hashes, versions and error."""
METRICS_FILE = "metrics.json"
"""The finished run's figures: base and fine-tuned on the reported split, selection, history, timings."""
PER_QUERY_FILE = "per_query.json"
"""Every metric per query of the reported split, base and fine-tuned (and which queries were seen in training)."""
SCORE_DISTRIBUTIONS_FILE = "score_distributions.json"
"""Similarities of relevant pairs and of hard non-relevant documents, both models."""
REPORT_FILE = "report.md"
"""The run report (tables, verdicts, figures)."""
FIGURES_DIR = "figures"
"""The report's PNG figures."""
MODEL_DIR = "model"
"""The selected model, a plain sentence-transformers folder."""
ADAPTER_DIR = "adapter"
"""A LoRA run's adapter alone (PEFT's files plus :data:`MODEL_NOTES_FILE`)."""
CHECKPOINTS_DIR = "checkpoints"
"""The trainer's checkpoints while the run is unfinished."""
TENSORBOARD_DIR = "tensorboard"
"""TensorBoard event files of the training."""
TRAIN_LOG_FILE = "train.log"
"""The run's log."""
MODEL_NOTES_FILE = "embedtune.json"
"""Inside a saved model (or adapter) folder: what embedtune knows that sentence-transformers does not keep (e.g.
``{"matryoshka_dims": [384, 256, 128, 64]}``, the dimensions it was trained to be truncated to)."""
