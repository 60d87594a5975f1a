"""bench/speed.py builds embedtune's training set-up as ``embedtune train`` does, so it must follow that API.

Its training-speed parts (and bench/gpu.py's, bench/compile_train.py's) only run on SciFact or a GPU, never in CI; this
builds the same set-up on a tiny folder and a tiny model, so a changed signature fails here instead of on a lent GPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from embedtune.models.loading import load_model

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_speed_run_setup_builds_the_arguments_loss_and_callbacks_of_a_run(
    tiny_model_dir, tiny_beir, tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(BENCH))
    import speed  # bench/speed.py

    make, dataset, pairs = speed.run_setup(tiny_beir, ["train.max_steps=5", "train.precision=fp32"])
    arguments, loss, callbacks = make(load_model(str(tiny_model_dir)), tmp_path)
    assert arguments.max_steps == 5 and callbacks
    assert set(dataset.column_names) >= {"anchor", "positive", "label"} and len(pairs) == len(dataset)
    assert speed._steps_per_second(lambda model, folder: make(model, folder), dataset, str(tiny_model_dir)) > 0


def test_compile_bench_times_the_first_steps_of_a_whole_run_and_stops_it(tiny_model_dir, tiny_beir, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import compile_train  # bench/compile_train.py

    overrides = [
        f"model.name_or_path={tiny_model_dir}",
        "train.precision=fp32",
        "train.batch_size=2",
        "eval.cache_max_gb=0",
    ]
    times = compile_train.whole_run_step_times(overrides, compiled=False, steps=2, data=tiny_beir)
    assert len(times) == 2 and all(seconds > 0 for seconds in times)


def test_speed_run_setup_prepares_the_model_as_a_run_does(tiny_model_dir, tiny_beir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import speed  # bench/speed.py

    make, _, _ = speed.run_setup(tiny_beir, ["train.dropout=0"])
    model = load_model(str(tiny_model_dir))
    make(model, tmp_path)
    assert {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)} == {0.0}


def test_dropout_bench_times_both_libraries_with_and_without_dropout(tiny_model_dir, tiny_beir, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import dropout  # bench/dropout.py

    result = dropout.dropout_part(4, tiny_beir, str(tiny_model_dir))
    assert len(result["steps_per_s"]) == 4 and all(value > 0 for value in result["steps_per_s"].values())
    assert result["embedtune_speedup"] > 0 and result["st_speedup"] > 0
