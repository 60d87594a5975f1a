"""A training step of InfoNCE never waits for the device: no tensor is read back to the host inside the loss."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from embedtune.losses.components import LossComponents
from embedtune.losses.info_nce import InfoNCELoss
from tests.losses.references import hand_table

aten = torch.ops.aten
READ_BACK = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.unique_dim, aten._unique2, aten.item}
"""Operators whose output size or value the host must wait for (``.item()``, ``float()``, boolean indexing...)."""

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


class HostReads(TorchDispatchMode):
    """Record every operator that makes the host wait for the device's result."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        boolean_index = func.overloadpacket in (aten.index, aten.index_put, aten.index_put_) and any(
            isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in _indices(func, args)
        )
        if func.overloadpacket in READ_BACK or boolean_index:
            self.seen.append(str(func))
        return func(*args, **kwargs)


def _indices(func, args) -> list:
    return [index for index in (args[1] if len(args) > 1 else []) if index is not None]


@pytest.fixture
def no_tolist(monkeypatch):
    """``Tensor.tolist`` copies to the host without going through an operator: make it fail inside the loss."""

    def refuse(self):
        raise AssertionError("the loss read a tensor back with tolist()")

    monkeypatch.setattr(torch.Tensor, "tolist", refuse)


TABLE_ROWS = [
    (["p0", "n0"], {"p0", "p1"}),  # row 1's positive is relevant to row 0's query: a false negative
    (["p1", "n1"], {"p1"}),
    (["p2", "p0"], {"p2"}),  # row 2's hard negative is row 0's positive
    (["p3", "p3"], {"p3"}),
]


@pytest.mark.parametrize("measuring", [True, False])
@pytest.mark.parametrize("isotropy_weight", [0.0, 0.1])
def test_forward_and_backward_read_nothing_back(measuring, isotropy_weight, no_tolist):
    loss_fn = InfoNCELoss(
        model=None, scale=20.0, symmetric=True, false_negatives=hand_table(TABLE_ROWS), isotropy_weight=isotropy_weight
    )
    loss_fn.components.measuring = measuring
    generator = torch.Generator().manual_seed(0)
    columns = [torch.randn(4, 8, generator=generator).to(DEVICE).requires_grad_() for _ in range(3)]
    labels = torch.tensor([[0, 1.0], [1, 2.0], [2, 0.5], [3, 0.0]], device=DEVICE)  # row 3's negative is padding
    recorder = HostReads()
    with recorder:
        loss = loss_fn.compute_loss_from_embeddings(columns, labels)
        loss.backward()
    assert recorder.seen == []
    assert all(column.grad is not None and column.grad.isfinite().all() for column in columns)


def test_diagnostics_are_computed_only_when_measuring():
    loss_fn = InfoNCELoss(model=None, scale=20.0, symmetric=True)
    columns = [torch.randn(4, 8, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    loss_fn.components.measuring = False
    loss_fn.compute_loss_from_embeddings(columns, None)
    assert set(loss_fn.components.pop_means()) == {"masked_candidates", "infonce_query_to_doc", "infonce_doc_to_query"}
    loss_fn.components.measuring = True
    loss_fn.compute_loss_from_embeddings(columns, None)
    assert {"alignment", "uniformity", "embedding_std"} <= set(loss_fn.components.pop_means())


def test_components_sum_on_the_device_and_read_once():
    components = LossComponents()
    components.add("a", torch.tensor(1.0, device=DEVICE))
    components.add("a", torch.tensor(3.0, device=DEVICE))
    components.add("b", 5)
    assert components.pop_means() == {"a": 2.0, "b": 5.0}
    assert components.pop_means() == {}
