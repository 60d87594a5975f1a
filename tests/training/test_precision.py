import pytest
import torch

from embedtune.training import arguments
from embedtune.training.arguments import mixed_precision


@pytest.mark.parametrize(("native", "expected"), [(True, (False, True)), (False, (False, False))])
def test_auto_on_cpu_uses_bf16_only_with_native_support(monkeypatch, native, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(arguments, "cpu_has_native_bf16", lambda: native)
    assert mixed_precision("auto") == expected


def test_explicit_precisions_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mixed_precision("fp32") == (False, False)
    assert mixed_precision("bf16") == (False, True)
    assert mixed_precision("fp16") == (False, False)  # needs CUDA


def test_auto_on_cuda_prefers_bf16_where_supported(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert mixed_precision("auto") == (False, True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert mixed_precision("auto") == (True, False)


def test_dataloader_workers_only_with_a_gpu_unless_set(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert arguments.dataloader_workers(None) == 0 and arguments.dataloader_workers(3) == 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(arguments.os, "cpu_count", lambda: 16)
    assert arguments.dataloader_workers(None) == 4
    monkeypatch.setattr(arguments.os, "cpu_count", lambda: 2)
    assert arguments.dataloader_workers(None) == 1 and arguments.dataloader_workers(0) == 0
