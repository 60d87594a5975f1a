"""Losses gathered across 2 CPU processes (gloo) equal one process on the whole batch: loss and gradients.

Each process holds its rows of a batch of random leaf embeddings and computes the loss and its gradients; DDP
averages gradients over processes, so each process's gradients divided by the world size must equal the gradients
of the single-process loss on the whole batch, and the mean of the processes' losses must equal its loss.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from embedtune.config import LossConfig
from embedtune.losses import build_loss
from embedtune.losses.cached_info_nce import CachedInfoNCELoss
from embedtune.losses.distributed import gather_batch, is_multi_process, rank_and_world_size
from embedtune.losses.false_negatives import FalseNegativeTable
from embedtune.losses.guide import GuideModel
from embedtune.losses.info_nce import InfoNCELoss

ATOL = 1e-5
DIM, GUIDE_DIM, TABLE_ROWS = 8, 6, 12


@dataclass(frozen=True)
class Case:
    """One loss setting and how the global batch is split: ``sizes[r]`` rows with ``negatives[r]`` columns."""

    name: str
    sizes: tuple[int, int] = (3, 3)
    negatives: tuple[int, int] = (2, 2)
    labels: bool = True
    table: bool = True
    guide: bool = False
    symmetric: bool = True
    isotropy: float = 0.3
    loss: str = "infonce"  # or "cached", "mnrl"


CASES = (
    Case("weighted_padded_masked_symmetric_isotropy"),
    Case("guide", guide=True),
    Case("uneven_batches_and_negative_columns", sizes=(4, 2), negatives=(2, 1), guide=True),
    Case("in_batch_only", negatives=(0, 0), labels=False, table=False, symmetric=False, isotropy=0.0),
    Case("cached", sizes=(3, 4), guide=True, loss="cached"),
    Case("mnrl", negatives=(1, 1), labels=False, table=False, isotropy=0.0, loss="mnrl"),
)


class FixedGuide(GuideModel):
    """The guide's masking rule without a model: the tests hand the loss the guide's embeddings."""

    def __init__(self, margin: float) -> None:
        self.margin, self.strategy = margin, "absolute"


def global_batch(case: Case) -> dict:
    """The whole batch: columns, labels (rows of a larger table, weights with padding slots), guide, table."""
    generator = torch.Generator().manual_seed(len(case.name))
    total, most = sum(case.sizes), max(case.negatives)
    columns = [torch.randn(total, DIM, generator=generator) for _ in range(2 + most)]
    guide = [torch.randn(total, GUIDE_DIM, generator=generator) for _ in range(2 + most)]
    weights = torch.rand(total, most, generator=generator) * 2.5 + 0.5
    weights[1, -1:] = 0.0  # a padding slot on rank 0 (when there are negatives)
    owner = [rank for rank, size in enumerate(case.sizes) for _ in range(size)]
    for row in range(total):
        weights[row, case.negatives[owner[row]] :] = 0.0  # columns a rank does not have are padding
    rows = torch.randperm(TABLE_ROWS, generator=generator)[:total]
    labels = torch.cat([rows.float().unsqueeze(1), weights], dim=1) if case.labels else None
    return {"columns": columns, "labels": labels, "guide": guide, "rows": rows.tolist()}


def false_negative_table(rows: list[int], most: int) -> FalseNegativeTable:
    """A table whose false negatives cross processes (split 3 + 3): batch row 0's query (rank 0) is relevant to
    row 4's positive and row 3's first negative (rank 1), row 5's query (rank 1) to row 1's positive (rank 0)."""
    keys = [[frozenset({100 * column + table_row}) for column in range(1 + most)] for table_row in range(TABLE_ROWS)]
    candidates = [tuple(row_keys) for row_keys in keys]
    relevant = [{table_row} for table_row in range(TABLE_ROWS)]  # each query's own positive (key 0 * 100 + row)
    relevant[rows[0]] |= {rows[4], 100 + rows[3]}
    relevant[rows[5]] |= {rows[1]}
    return FalseNegativeTable(candidates, [frozenset(keys) for keys in relevant])


def run_case(case: Case, rank: int | None) -> tuple[float, list[torch.Tensor], dict[str, float]]:
    """Loss and embedding gradients of ``rank``'s rows (``None``: one process, whole batch), and logged parts."""
    batch = global_batch(case)
    table = false_negative_table(batch["rows"], max(case.negatives)) if case.table else None
    loss_fn = build_for(case, table, rank)
    if rank is None:
        part, count = slice(None), 2 + max(case.negatives)
    else:
        start = sum(case.sizes[:rank])
        part, count = slice(start, start + case.sizes[rank]), 2 + case.negatives[rank]
    leaves = [column[part].clone().requires_grad_() for column in batch["columns"][:count]]
    labels = None if batch["labels"] is None else batch["labels"][part, : count - 1]
    guide = [column[part] for column in batch["guide"][:count]] if case.guide else None
    if case.loss == "cached":
        loss_fn._guide_embeddings = guide
        reps = [list(leaf.split(2)) for leaf in leaves]  # mini-batches of 2 rows
        reps = [[chunk.detach().requires_grad_() for chunk in column] for column in reps]
        loss = loss_fn.calculate_loss(reps, labels, with_backward=True)
        grads = [torch.cat([chunk.grad for chunk in column]) for column in reps]
    else:
        if case.loss == "mnrl":
            loss = loss_fn.compute_loss_from_embeddings(leaves, labels)
        else:
            loss = loss_fn.compute_loss_from_embeddings(leaves, labels, guide)
        loss.backward()
        grads = [leaf.grad for leaf in leaves]
    components = loss_fn.components.pop_means() if hasattr(loss_fn, "components") else {}
    return float(loss.detach()), [grad.detach() for grad in grads], components


def build_for(case: Case, table: FalseNegativeTable | None, rank: int | None):
    if case.loss == "mnrl":
        directions = ("query_to_doc", "doc_to_query") if case.symmetric else ("query_to_doc",)
        return MultipleNegativesRankingLoss(None, directions=directions, gather_across_devices=rank is not None)
    settings = {
        "scale": 20.0,
        "symmetric": case.symmetric,
        "false_negatives": table,
        "guide": FixedGuide(margin=0.2) if case.guide else None,
        "isotropy_weight": case.isotropy,
    }
    if case.loss == "cached":
        return CachedInfoNCELoss(None, mini_batch_size=2, **settings)
    return InfoNCELoss(None, **settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        assert rank_and_world_size() == (rank, world_size) and is_multi_process()
        results = {case.name: run_case(case, rank) for case in CASES}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def gathered(tmp_path_factory) -> list[dict]:
    """Every case's per-rank results from one pair of spawned gloo processes."""
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(2, free_port(), str(out_dir)), nprocs=2, join=True)
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(2)]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_two_processes_equal_one_process_with_the_whole_batch(gathered, case):
    single_loss, single_grads, single_parts = run_case(case, None)
    per_rank = [results[case.name] for results in gathered]

    assert sum(loss for loss, _, _ in per_rank) / 2 == pytest.approx(single_loss, abs=ATOL)
    start = 0
    for rank, (_, grads, _) in enumerate(per_rank):
        rows = slice(start, start + case.sizes[rank])
        assert len(grads) == 2 + case.negatives[rank]
        for column, grad in enumerate(grads):
            # DDP averages gradients over the 2 processes.
            torch.testing.assert_close(grad / 2, single_grads[column][rows], atol=ATOL, rtol=0)
        start += case.sizes[rank]
    if case.isotropy:  # isotropy is measured on the gathered batch: every process logs the single-process value
        for _, _, parts in per_rank:
            assert parts["uniformity"] == pytest.approx(single_parts["uniformity"], abs=ATOL)


def test_the_cases_exercise_masking_and_padding():
    """The single-process references mask across the rank boundary, by table and guide, and have padding slots."""
    case = CASES[1]
    _, _, parts = run_case(case, None)
    assert parts["masked_candidates"] > 0 and parts["masked_by_guide"] > 0
    batch = global_batch(case)
    assert (batch["labels"][:, 1:] == 0).any()
    table = false_negative_table(batch["rows"], 2)
    mask = table.query_to_candidates_mask(torch.tensor(batch["rows"]), 3)
    assert mask[0, 4] and mask[0, 6 + 3] and mask[5, 1]  # rank 0's query vs rank 1's candidates and back


def test_a_single_process_batch_is_not_gathered():
    columns = [torch.randn(3, DIM) for _ in range(3)]
    batch = gather_batch(columns, torch.arange(3.0), torch.ones(3, 1))
    assert batch.columns == columns and (batch.offset, batch.local_size, batch.world_size) == (0, 3, 1)
    assert batch.loss_scale == pytest.approx(1 / 3) and rank_and_world_size() == (0, 1)


@pytest.mark.parametrize(("world_size", "gather"), [(None, False), ("1", False), ("2", True)])
def test_mnrl_gathers_across_processes_when_launched_in_several(tiny_model_dir, monkeypatch, world_size, gather):
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    for mini_batch_size in (None, 4):
        loss = build_loss(model, LossConfig(name="mnrl", mini_batch_size=mini_batch_size))
        assert loss.gather_across_devices is gather
