"""Gather a contrastive batch across processes, so that in-batch negatives span every process's batch.

Under data-parallel training (``torchrun``, ``accelerate launch``: one process per device, DDP) each process embeds
its own share of the batch. :func:`gather_batch` collects every process's columns with gradients
(sentence-transformers' ``all_gather_with_grad``; the backward pass sums each process's gradient back to the rows
it embedded), and each process then scores only its own queries against all candidates. With the per-process loss
scaled by ``world_size / global_batch`` (see :attr:`GatheredBatch.loss_scale`), the mean of the processes' losses,
and DDP's mean of their gradients, equal one process's loss and gradients on the whole batch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from sentence_transformers.util import all_gather_with_grad
from torch import Tensor

from embedtune.errors import ConfigError

logger = logging.getLogger(__name__)

PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)
"""Timeout of the collectives, as the trainer's default ``ddp_timeout``."""


def rank_and_world_size() -> tuple[int, int]:
    """Return ``(rank, world size)`` of the initialised default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_multi_process() -> bool:
    """Whether training runs in several processes: a process group of size > 1, or a launcher's ``WORLD_SIZE > 1``.

    The launcher's variable counts too, so that a loss built before the trainer initialises the process group
    still knows it will run distributed.
    """
    if rank_and_world_size()[1] > 1:
        return True
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def join_process_group() -> None:
    """Under a launcher (``WORLD_SIZE`` > 1), join the process group now rather than when the trainer starts.

    The group is what the trainer would create (NCCL with one GPU per process by ``LOCAL_RANK``, gloo on CPUs, from
    the launcher's ``MASTER_ADDR``/``MASTER_PORT``/``RANK``/``WORLD_SIZE``); the trainer reuses a group that exists,
    so joining early changes nothing for training, and it lets rank 0 alone create the run folder and share its
    path. Does nothing in a single process or when the group exists. With ``CUDA_VISIBLE_DEVICES=""`` torch sees
    no GPU and the processes train on CPUs with gloo.

    Raises:
        ConfigError: if CUDA is available but a node runs more processes than it has visible GPUs
            (:func:`check_processes_fit_gpus`), before any group is joined or run folder created.
    """
    if not is_multi_process() or (dist.is_available() and dist.is_initialized()):
        return
    backend = "gloo"
    if torch.cuda.is_available():
        check_processes_fit_gpus()
        backend = "nccl"
        torch.cuda.set_device(_launcher_int("LOCAL_RANK", 0))
    dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
    logger.info(
        "Process %d of %d (%s): in-batch negatives are gathered from every process's batch",
        dist.get_rank(),
        dist.get_world_size(),
        backend,
    )


def check_processes_fit_gpus() -> None:
    """Stop when a node launches more processes than it has visible GPUs (DDP over NCCL needs one GPU each).

    The processes on a node are the launcher's ``LOCAL_WORLD_SIZE`` (or ``LOCAL_RANK + 1`` where that is larger or
    the only one set). Does nothing without CUDA: processes on CPUs share the machine with gloo.

    Raises:
        ConfigError: naming the numbers of processes and GPUs and the two ways out: fewer processes per node, or
            CPU training with gloo (``CUDA_VISIBLE_DEVICES=""``).
    """
    if not torch.cuda.is_available():
        return
    gpus = torch.cuda.device_count()
    processes = max(_launcher_int("LOCAL_WORLD_SIZE", 1), _launcher_int("LOCAL_RANK", 0) + 1)
    if processes <= gpus:
        return
    raise ConfigError(
        f"{processes} processes per node but {gpus} visible GPU{'' if gpus == 1 else 's'}: DDP needs one GPU per "
        f"process; launch at most {gpus} (torchrun --nproc_per_node {gpus}), or train on CPUs with gloo "
        f'(CUDA_VISIBLE_DEVICES="" torchrun --nproc_per_node {processes} ...)'
    )


def _launcher_int(name: str, default: int) -> int:
    """Read a launcher's integer variable (``LOCAL_RANK``, ...); ``default`` when it is unset or not a number."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class GatheredBatch:
    """The batch of every process, and where this process's rows sit in it.

    Rows are in rank order (rank 0's rows first); hard-negative columns are padded to the most any process has,
    with weight 0 (padding slots).

    Attributes:
        columns: ``[queries, positives, negative_1, ..., negative_n]``, each ``(total, dim)``; the rows of other
            processes carry gradients back to them.
        rows: ``(total,)`` dataset row indices, or ``None`` unless every process has them.
        neg_weights: ``(total, n)`` hard-negative weights (1 where a process had no labels), or ``None`` when
            ``n = 0``.
        guide: The guide model's columns, each ``(total, guide_dim)``, or ``None``.
        offset: Index of this process's first row.
        local_size: This process's rows.
        world_size: Number of processes.
    """

    columns: list[Tensor]
    rows: Tensor | None
    neg_weights: Tensor | None
    guide: list[Tensor] | None
    offset: int
    local_size: int
    world_size: int

    @property
    def total(self) -> int:
        """Rows over all processes."""
        return self.columns[0].size(0)

    @property
    def local(self) -> slice:
        """Slice of this process's rows in the gathered tensors."""
        return slice(self.offset, self.offset + self.local_size)

    @property
    def loss_scale(self) -> float:
        """Factor for a sum over this process's queries: ``world_size / total``; ``1 / batch`` in one process.

        The mean over processes of ``loss_scale * sum`` is the mean over all queries, whatever each process's
        share of the batch.
        """
        return self.world_size / self.total

    def targets(self, device: torch.device) -> Tensor:
        """Return ``(local_size,)`` indices of this process's rows in the gathered batch: each query's positive."""
        return torch.arange(self.offset, self.offset + self.local_size, device=device)


def gather_batch(
    columns: list[Tensor],
    rows: Tensor | None = None,
    neg_weights: Tensor | None = None,
    guide: list[Tensor] | None = None,
) -> GatheredBatch:
    """Gather every process's batch; in a single process, return this one unchanged.

    Every process must call this at the same point, with the same embedding width. Batch sizes may differ (rows are
    padded for the exchange and dropped after it), and so may the number of hard-negative columns (a process's
    missing columns become zeros at weight 0: padding slots).

    Args:
        columns: ``[queries, positives, negative_1, ...]``, each ``(batch, dim)``; gathered with gradients.
        rows: ``(batch,)`` dataset row indices, or ``None``.
        neg_weights: ``(batch, n)`` hard-negative weights, or ``None`` (weight 1).
        guide: The guide's columns, each ``(batch, guide_dim)``, or ``None``; gathered without gradients.

    Returns:
        The gathered batch.

    Raises:
        ValueError: if some processes pass guide embeddings and others do not.
    """
    rank, world_size = rank_and_world_size()
    batch, num_negatives = columns[0].size(0), len(columns) - 2
    if world_size == 1:
        return GatheredBatch(list(columns), rows, neg_weights, guide, 0, batch, 1)
    device = columns[0].device
    flags = [batch, num_negatives, rows is not None, guide is not None]
    shapes = _all_gather_plain(torch.tensor(flags, dtype=torch.long, device=device)).view(world_size, -1).tolist()
    sizes = [shape[0] for shape in shapes]
    most_negatives = max(shape[1] for shape in shapes)
    has_rows = all(shape[2] for shape in shapes)
    if len({shape[3] for shape in shapes}) > 1:
        raise ValueError("guide embeddings were passed on some processes only")
    padded_columns = [*columns, *(torch.zeros_like(columns[1]) for _ in range(most_negatives - num_negatives))]
    gathered = _gather_rows(torch.stack(padded_columns, dim=1), sizes, with_grad=True)  # (total, 2 + n, dim)
    labels = _local_labels(rows if has_rows else None, neg_weights, batch, num_negatives, most_negatives, device)
    gathered_labels = _gather_rows(labels, sizes, with_grad=False)  # (total, 1 + n)
    gathered_guide = None
    if guide is not None:
        guide = [column.to(device) for column in guide]  # a re-tokenising guide may sit on another device
        padded_guide = [*guide, *(torch.zeros_like(guide[1]) for _ in range(most_negatives - num_negatives))]
        gathered_guide = list(_gather_rows(torch.stack(padded_guide, dim=1), sizes, with_grad=False).unbind(1))
    return GatheredBatch(
        columns=list(gathered.unbind(1)),
        rows=gathered_labels[:, 0] if has_rows else None,
        neg_weights=gathered_labels[:, 1:] if most_negatives else None,
        guide=gathered_guide,
        offset=sum(sizes[:rank]),
        local_size=batch,
        world_size=world_size,
    )


def _local_labels(
    rows: Tensor | None,
    neg_weights: Tensor | None,
    batch: int,
    num_negatives: int,
    most_negatives: int,
    device: torch.device,
) -> Tensor:
    """Return ``(batch, 1 + most_negatives)`` float64 ``[row or -1, weights (1 when unknown), 0 on padding]``."""
    labels = torch.zeros(batch, 1 + most_negatives, dtype=torch.float64, device=device)
    labels[:, 0] = -1 if rows is None else rows.to(device=device, dtype=torch.float64)
    weights = torch.ones(batch, num_negatives, device=device) if neg_weights is None else neg_weights
    labels[:, 1 : 1 + num_negatives] = weights.to(device=device, dtype=torch.float64)
    return labels


def _gather_rows(tensor: Tensor, sizes: list[int], with_grad: bool) -> Tensor:
    """All-gather ``tensor`` (``(sizes[rank], ...)`` here) into ``(sum(sizes), ...)`` in rank order.

    Rows are padded to the largest size for the exchange (collectives need equal shapes) and dropped after it.
    """
    largest = max(sizes)
    if tensor.size(0) < largest:
        padding = tensor.new_zeros(largest - tensor.size(0), *tensor.shape[1:])
        tensor = torch.cat([tensor, padding])
    gathered = all_gather_with_grad(tensor) if with_grad else _all_gather_plain(tensor)
    if all(size == largest for size in sizes):
        return gathered
    keep = torch.cat([torch.arange(size) + rank * largest for rank, size in enumerate(sizes)]).to(tensor.device)
    return gathered.index_select(0, keep)


def _all_gather_plain(tensor: Tensor) -> Tensor:
    """All-gather without gradients, concatenated along the first dimension in rank order."""
    tensor = tensor.detach().contiguous()
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor)
    return torch.cat(parts)
