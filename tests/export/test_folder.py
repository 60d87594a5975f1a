"""``embedtune export``: a run's model as a standalone folder that loads without peft."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedtune.cli import main
from embedtune.config import LoraConfig
from embedtune.export.folder import export_model, has_adapter_files
from embedtune.models.lora import add_lora, merge_lora, save_adapter
from embedtune.runs import start_run
from tests.models.test_lora import TEXTS, encode, perturb_adapter

LOAD_WITHOUT_PEFT = """
import sys
sys.modules["peft"] = None  # any attempt to import peft fails
import numpy as np
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
model.eval()
np.save(sys.argv[2], model.encode(sys.argv[3:]))
"""


def encode_without_peft(folder: Path, out: Path) -> np.ndarray:
    """Load ``folder`` in a fresh interpreter where ``import peft`` fails and embed :data:`TEXTS` there."""
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_PEFT, str(folder), str(out), *TEXTS],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return np.load(out)


def make_run(runs_dir: Path, name: str, mode: str) -> Path:
    return start_run(runs_dir, name, config={"train": {"mode": mode}}, data_hashes={}, command="test")


@pytest.fixture(scope="module")
def lora_model(tiny_model_dir) -> SentenceTransformer:
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    add_lora(model, LoraConfig(rank=4))
    perturb_adapter(model)
    return model


def test_adapter_model_is_merged_and_loads_without_peft(lora_model, tmp_path):
    folder = make_run(tmp_path / "runs", "lora", "lora")
    lora_model.save(str(folder / "model"))  # sentence-transformers keeps only the adapter here
    assert has_adapter_files(folder / "model")
    expected = encode(lora_model)

    out = export_model(folder, tmp_path / "export", merge=True)

    assert out == tmp_path / "export" and not has_adapter_files(out)
    assert not list(tmp_path.glob(".export.partial"))
    assert torch.allclose(encode(SentenceTransformer(str(out), device="cpu")), expected, atol=1e-5)
    without_peft = encode_without_peft(out, tmp_path / "embeddings.npy")
    np.testing.assert_allclose(without_peft, expected.numpy(), atol=1e-5)


def test_loading_an_adapter_model_without_peft_really_fails(lora_model, tmp_path):
    """The control for the test above: the peft block in the subprocess works."""
    lora_model.save(str(tmp_path / "adapter-model"))
    with pytest.raises(AssertionError, match="requires installing the `peft` package"):
        encode_without_peft(tmp_path / "adapter-model", tmp_path / "embeddings.npy")


def test_run_with_merged_model_exports_it_and_matches_base_plus_adapter(lora_model, tiny_model_dir, tmp_path):
    """The pipeline's layout: model/ already merged, adapter/ alone; the export equals base + adapter."""
    folder = make_run(tmp_path / "runs", "lora-run", "lora")
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    add_lora(model, LoraConfig(rank=4))
    model.load_state_dict(lora_model.state_dict())  # same adapter values, without touching the shared fixture
    save_adapter(model, folder / "adapter", {"base_model": str(tiny_model_dir)})
    merge_lora(model).save(str(folder / "model"))

    out = export_model("lora-run", tmp_path / "export", merge=True, runs_dir=tmp_path / "runs")  # by run name

    base_plus_adapter = SentenceTransformer(str(tiny_model_dir), device="cpu")
    base_plus_adapter.load_adapter(str(folder / "adapter"))
    expected = encode(base_plus_adapter)
    assert torch.allclose(encode(SentenceTransformer(str(out), device="cpu")), expected, atol=1e-5)
    np.testing.assert_allclose(encode_without_peft(out, tmp_path / "e.npy"), expected.numpy(), atol=1e-5)


def test_lora_run_needs_merge(lora_model, tmp_path):
    folder = make_run(tmp_path / "runs", "lora", "lora")
    lora_model.save(str(folder / "model"))
    with pytest.raises(ValueError, match="pass --merge"):
        export_model(folder, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_lora_run_with_its_adapter_folder_needs_merge_and_one_that_kept_the_base_does_not(tiny_model_dir, tmp_path):
    shipped = make_run(tmp_path / "runs", "shipped", "lora")
    shutil.copytree(tiny_model_dir, shipped / "model")  # stands in for the merged model
    (shipped / "adapter").mkdir()
    with pytest.raises(ValueError, match="pass --merge"):
        export_model(shipped, tmp_path / "export")
    kept_base = make_run(tmp_path / "runs", "kept-base", "lora")
    shutil.copytree(tiny_model_dir, kept_base / "model")  # the base model, no adapter/: nothing to merge
    out = export_model(kept_base, tmp_path / "export")
    assert (out / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()


def test_full_run_is_copied(tiny_model_dir, tmp_path):
    folder = make_run(tmp_path / "runs", "full", "full")
    shutil.copytree(tiny_model_dir, folder / "model")
    out = export_model(folder, tmp_path / "nested" / "export")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (folder / "model").iterdir())
    assert (out / "model.safetensors").read_bytes() == (folder / "model" / "model.safetensors").read_bytes()


def test_existing_output_is_refused_untouched(tiny_model_dir, tmp_path):
    folder = make_run(tmp_path / "runs", "full", "full")
    shutil.copytree(tiny_model_dir, folder / "model")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        export_model(folder, tmp_path / "export")
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["keep.txt"]


def test_run_without_model_is_an_error(tmp_path):
    folder = make_run(tmp_path / "runs", "failed", "full")
    with pytest.raises(ValueError, match="no model to export"):
        export_model(folder, tmp_path / "export")


def test_cli_export(lora_model, tmp_path, capsys):
    folder = make_run(tmp_path / "runs", "lora", "lora")
    lora_model.save(str(folder / "model"))
    runs = ["--runs-dir", str(tmp_path / "runs")]

    assert main(["export", "lora", str(tmp_path / "out"), *runs]) == 2
    assert "error: run " in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["export", "lora", str(tmp_path / "out"), "--merge", *runs]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert main(["export", str(folder), str(tmp_path / "out"), "--merge"]) == 2
    assert "already exists" in capsys.readouterr().err
