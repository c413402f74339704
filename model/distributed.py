"""Data-parallel pretraining under `torchrun`, PyTorch's own launcher: which process this is, and the
few collectives the trainer needs. Without torchrun's environment everything here is one process.

    torchrun --nproc-per-node 4 -m vbsearch.cli train --data-dir D        # one machine, 4 GPUs
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-endpoint HOST:29500 -m vbsearch.cli train --data-dir D

Rank 0 writes checkpoints and logs; every rank reads the same catalog and checkpoint folder, so the data
dir must be reachable from every node (a shared filesystem).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Process:
    rank: int = 0  # this process among all (torchrun's RANK)
    world_size: int = 1  # processes in all (WORLD_SIZE)
    local_rank: int = 0  # this process on its machine (LOCAL_RANK): picks its GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def this_process() -> Process:
    """This process as torchrun's environment describes it (rank 0 of 1 without torchrun)."""
    return Process(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def start(device: str) -> tuple[Process, str]:
    """This process under torchrun (process group joined: NCCL on CUDA, gloo on CPU) and the device it
    trains on (its own GPU, cuda:LOCAL_RANK); outside torchrun, one process on `device`."""
    proc = this_process()
    if not proc.distributed:
        return proc, device
    if device.startswith("cuda"):
        torch.cuda.set_device(proc.local_rank)
        device = f"cuda:{proc.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    if proc.is_main:
        log.info("data-parallel pretraining: %d processes (%s)", proc.world_size, dist.get_backend())
    return proc, device


def barrier(proc: Process) -> None:
    if proc.distributed:
        dist.barrier()


@contextmanager
def main_first(proc: Process) -> Iterator[None]:
    """Rank 0 runs the block first (it writes, e.g. the visual vocabulary), the others after it (they read)."""
    if not proc.is_main:
        barrier(proc)
    yield
    if proc.is_main:
        barrier(proc)


def all_sum(values: list[float], proc: Process) -> list[float]:
    """Element-wise sum of `values` over all processes (in float64, so counts stay exact)."""
    if not proc.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


def stop(proc: Process) -> None:
    if proc.distributed and dist.is_initialized():
        dist.destroy_process_group()
