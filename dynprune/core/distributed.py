"""One run trained by several processes with torch.distributed (launched by torchrun, one process per GPU).

Every rank holds the same model and takes its share of each global batch; DistributedDataParallel averages
the gradients, so all ranks apply the same update and hold the same weights. The masks are computed on
every rank from those weights and compared by checksum after every update: a difference stops the run
instead of being assumed away. Evaluation counts each image once across ranks; only rank 0 writes files.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass


class RankMismatch(RuntimeError):
    """The ranks disagree about something that must be identical (the masks)."""


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = Context()


def launched() -> bool:
    """Is this process one of several started by torchrun?"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def from_env(cuda: bool) -> Context:
    """The context torchrun set up (or one process alone); joins the process group once."""
    if not launched():
        return SINGLE
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_sum(ctx: Context, values: list[float], device) -> list[float]:
    """Element-wise sums over ranks (float64): per-rank counts and loss sums become global ones."""
    if not ctx.active:
        return values
    import torch
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def masks_digest(masks: list) -> int:
    """A 63-bit checksum of a list of masks (which entries are kept, in order)."""
    h = hashlib.blake2b(digest_size=8)
    for m in masks:
        h.update(m.detach().bool().cpu().numpy().tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


def check_masks_agree(ctx: Context, masks: list, device, where: str) -> bool:
    """Raise RankMismatch unless every rank holds exactly the same masks; whether it compared any (one process
    compares nothing)."""
    if not ctx.active:
        return False
    import torch
    import torch.distributed as dist
    digest = masks_digest(masks)
    t = torch.tensor([digest, -digest], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if int(t[0]) != digest or -int(t[1]) != digest:
        raise RankMismatch(f"the masks differ across the {ctx.world} processes after the update {where}; "
                           f"the ranks' weights diverged (check that every rank runs the same code and data)")
    return True


def barrier(ctx: Context) -> None:
    if ctx.active:
        import torch.distributed as dist
        dist.barrier()
