"""``embedtune tune``: a budgeted, dev-only recipe search over ordinary runs (Optuna), resumable and parallel.

:mod:`~embedtune.tuning.space` (what is searched), :mod:`~embedtune.tuning.study` (where the study lives),
:mod:`~embedtune.tuning.objective` (one trial), :mod:`~embedtune.tuning.runner` (the budgeted loop),
:mod:`~embedtune.tuning.best` (best configuration, test once), :mod:`~embedtune.tuning.show` (``tune show``).
"""
