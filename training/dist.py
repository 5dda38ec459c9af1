"""The process group of a ``torchrun`` launch (a plain run is rank 0 of 1), and the rank helpers training uses."""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from training.setup import TrainingSetupError

__all__ = ["Dist", "resolve_device"]


def resolve_device(device_arg: str, local_rank: int = 0, world: int = 1) -> torch.device:
    """``auto``/``cpu``/``cuda[:n]`` to a device; under torchrun each process takes the GPU of its ``LOCAL_RANK``."""
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_arg)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingSetupError("--device cuda requested but CUDA is not available")
        device = torch.device("cuda", local_rank if world > 1 else (device.index or 0))
    return device


class Dist:
    """Process-group facts from ``torchrun``'s environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``).

    With more than one process the group is initialised here: NCCL on CUDA, gloo on CPU.
    """

    def __init__(self, device_arg: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(device_arg, self.local_rank, self.world)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo", init_method="env://",
                                    rank=self.rank, world_size=self.world)

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

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
