"""The process group of a ``torchrun`` launch (a plain run is rank 0 of 1), and the rank helpers training uses."""
from __future__ import annotations

import datetime
import os
from typing import Any, Iterable

import torch
import torch.distributed as dist

from common.devices import local_rank as _local_rank
from common.devices import resolve_device as _resolve_device
from common.devices import world_size as _world_size
from training.setup import TrainingSetupError  # noqa: F401  (re-exported: training errors)

__all__ = ["Dist", "resolve_device"]


def resolve_device(device_arg: str, local_rank: int = 0, world: int = 1) -> torch.device:
    """``auto``/``cpu``/``cuda[:n]`` to a device (:func:`common.devices.resolve_device`); under torchrun each process
    takes the GPU of its ``LOCAL_RANK``, and a plain run a bare ``cuda`` as ``cuda:0``."""
    device = _resolve_device(device_arg, rank=local_rank if world > 1 else 0)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
    return device


class Dist:
    """Process-group facts from ``torchrun``'s environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``).

    With more than one process the group is initialised here: NCCL on CUDA, gloo on CPU. A group that is
    already initialised (``train_style.py`` runs the teacher, then the VToonify stages in one process) is
    used as it is, and left to the ``Dist`` that made it to close.
    """

    def __init__(self, device_arg: str):
        self.world = _world_size()
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = _local_rank()
        self.device = resolve_device(device_arg, self.local_rank, self.world)
        self._owns_group = False
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            # collectives wait up to an hour: rank 0 alone does some long set-up work (aligning a picture collection)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo", init_method="env://",
                                    rank=self.rank, world_size=self.world, timeout=datetime.timedelta(minutes=60))
            self._owns_group = True

    @classmethod
    def single(cls, device: str | torch.device) -> "Dist":
        """One process on ``device`` with no process group (a loop driven from Python, not torchrun)."""
        self = cls.__new__(cls)
        self.world, self.rank, self.local_rank, self._owns_group = 1, 0, 0, False
        self.device = torch.device(device)
        return self

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and sample grids."""
        return self.rank == 0

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """The mean over all processes of each (scalar) value, as Python floats."""
        keys = sorted(values)
        stacked = torch.stack([values[k].detach().float() for k in keys])
        if self.world > 1:
            dist.all_reduce(stacked)
            stacked /= self.world
        return {k: float(v) for k, v in zip(keys, stacked.tolist())}

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (on every rank)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sum(self, values: list[float]) -> list[float]:
        """The sum over all processes of each number."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace the gradient of each parameter by its mean over all processes (one all-reduce).

        This is what ``DistributedDataParallel`` does in its backward hooks, done after ``backward()``, so it
        also holds for steps DDP does not support (gradients taken with ``create_graph``, such as R1) and for
        modules whose frozen parts change between steps. A parameter without a gradient on this process takes
        part as zeros; one without a gradient on every process keeps none.
        """
        if self.world == 1:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        # a parameter no process has a gradient for stays without one (the optimiser skips it, as in one process)
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
        dist.all_reduce(has)
        params = [p for p, n in zip(params, has.tolist()) if n > 0]
        if not params:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def check_in_sync(self, module: torch.nn.Module, what: str) -> None:
        """Raise if ``module``'s parameters differ between processes (a fingerprint of each is compared).

        The data-parallel loops keep one model on every process by applying the same averaged gradient;
        this catches a loop that lost that property before it saves a model from rank 0 alone.
        """
        if self.world == 1:
            return
        with torch.no_grad():  # one parameter at a time: no full-size copy of the model
            total = weighted = 0.0
            for p in module.parameters():
                flat = p.detach().reshape(-1).double()
                weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device).remainder_(97)
                total, weighted = total + float(flat.sum()), weighted + float((flat * weights).sum())
            fingerprint = (total, weighted)
        prints = self.gather(fingerprint)
        if any(p != prints[0] for p in prints):
            raise RuntimeError(f"{what} differs between the {self.world} processes ({prints}): the gradient "
                               "averaging of the data-parallel loop is broken")

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False
