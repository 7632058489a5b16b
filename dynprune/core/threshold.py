"""Exact-count selection: which entries of a set of tensors survive a sparsity target.

One global threshold over millions of weights, taken at every update of a schedule: exact (the achieved
sparsity is the target to the weight), deterministic, and cheap in time and memory.
"""
from __future__ import annotations

import torch

_CHUNK = 1 << 18  # elements handled at once: 1 MiB of int32 keys, small enough to stay in a core's L2 cache
_MAX_KEY = 2 ** 31 - 1
_HALF = 1 << 15  # offset of the top-16-bit histogram: int32 keys >> 16 run from -2^15 to 2^15 - 1
_ZERO_BIN = _HALF  # the bin of key 0, which pruned entries get


class _Scratch:
    """The buffers of one chunk (int32 keys, int32 work, two boolean), reused chunk after chunk: operations
    into fresh allocations would fault in new pages every time (measured: 4-5x the time of the same
    operation into a buffer already touched)."""

    def __init__(self, device: torch.device):
        self.device, self.size = device, 0

    def __call__(self, n: int):
        if n > self.size:
            self.size = max(n, _CHUNK)
            self.buffers = [torch.empty(self.size, dtype=dtype, device=self.device)
                            for dtype in (torch.int32, torch.int32, torch.bool, torch.bool)]
        return [b[:n] for b in self.buffers]


class OneThread:
    """`with OneThread(device):` runs CPU work on one thread. A mask update is a few hundred operations on
    chunks or tensors of a few MB: too short to gain from a second thread, and on a shared machine a thread
    waiting at every operation's barrier for a descheduled sibling made the update 5-10x slower (measured
    for ResNet-18 with another process busy: 1-3 s on two threads, 0.14-0.2 s on one)."""

    def __init__(self, device: torch.device):
        self.threads = torch.get_num_threads() if device.type == "cpu" else None

    def __enter__(self):
        if self.threads is not None:
            torch.set_num_threads(1)

    def __exit__(self, *_):
        if self.threads is not None:
            torch.set_num_threads(self.threads)


def _memory_order(t: torch.Tensor) -> list[int]:
    return sorted(range(t.dim()), key=lambda d: -t.stride(d))  # outermost to innermost dimension in memory


def _bool_like(mask: torch.Tensor) -> torch.Tensor:
    """An uninitialised boolean tensor in the mask's memory layout (contiguous if the mask's is unusual)."""
    out = torch.empty_like(mask, dtype=torch.bool)
    if not out.permute(_memory_order(out)).is_contiguous():
        out = torch.empty(mask.shape, dtype=torch.bool, device=mask.device)
    return out


def _chunks(score: torch.Tensor, mask: torch.Tensor, out: torch.Tensor):
    """Aligned flat chunks (score, mask, out) of one tensor, in the memory order of `out` (a dense boolean
    tensor): counting does not care about order, and walking memory in order needs no copy (a channels-last
    weight is not contiguous in logical order). A score or mask in another layout than `out` (contiguous
    random scores for channels-last masks) is copied a few whole rows at a time."""
    order = _memory_order(out)
    o, s, m = out.permute(order), score.detach().permute(order), mask.permute(order)
    n = o.numel()
    if s.is_contiguous() and m.is_contiguous():
        o, s, m = o.reshape(-1), s.reshape(-1), m.reshape(-1)  # views
        for a in range(0, n, _CHUNK):
            yield s[a:a + _CHUNK], m[a:a + _CHUNK], o[a:a + _CHUNK]
    else:
        rows = o.shape[0]
        row = n // rows if rows else 0
        step = max(1, _CHUNK // max(row, 1))
        o = o.reshape(-1)
        for i in range(0, rows, step):
            j = min(rows, i + step)
            yield s[i:j].reshape(-1), m[i:j].reshape(-1), o[i * row:j * row]


def _keys(score, mask, absolute: bool, key, work, active) -> None:
    """int32 keys that order like the float32 scores (|scores| with `absolute`), 0 for pruned entries, and
    the active flags (mask != 0). The bit pattern of a non-negative float32 read as an int32 orders like the
    value; a negative one orders backwards, so its 31 magnitude bits are flipped; -0.0 becomes +0.0 first,
    so that equal scores get equal keys. A NaN orders by its bits: +NaN above +inf, -NaN below -inf.
    Pruned entries share key 0 with scores of 0 whatever their own score (an inf or NaN too): the counts
    take them out again, and the writes mask them."""
    value = key.view(torch.float32)
    if absolute and score.dtype == torch.float32:
        torch.abs(score, out=value)
    else:
        value.copy_(score)  # float16 / bfloat16 exactly, float64 rounded
        if absolute:
            value.abs_()
        else:
            value.add_(0.0)  # -0.0 + 0.0 = +0.0
            torch.bitwise_right_shift(key, 31, out=work)  # -1 where negative, 0 elsewhere
            key.bitwise_xor_(work.bitwise_and_(_MAX_KEY)).clamp_min_(-_MAX_KEY)  # -2^31: one -NaN, merged
    active.copy_(mask)  # != 0
    key.mul_(active)  # (measured: 2x faster than eq + masked_fill with a sentinel key)


def _bin_of_rank(hist: torch.Tensor, rank: int) -> tuple[int, int]:
    """(bin holding the rank-th largest entry (1-based), entries in the bins above it)."""
    from_top = hist.flip(0).cumsum(0)
    i = int(torch.searchsorted(from_top, rank))
    b = hist.numel() - 1 - i
    return b, int(from_top[i]) - int(hist[b])


def _keep_first(flags: torch.Tensor, k: int) -> None:
    """Clear all but the first `k` set entries of a boolean tensor, first in row-major (logical) order."""
    rows = flags if flags.dim() >= 2 else flags.view(1, -1)
    counts = rows.sum(dim=tuple(range(1, rows.dim()))).cumsum(0)  # set entries up to each row of dim 0
    j = int(torch.searchsorted(counts, k))  # the row holding the k-th
    rows[j + 1:] = False
    target = rows[j]
    row = target.reshape(-1)  # logical order: a view, or a copy for a channels-last row
    row[row.nonzero().flatten()[k - (int(counts[j - 1]) if j else 0):]] = False
    if row.untyped_storage().data_ptr() != target.untyped_storage().data_ptr():
        target.copy_(row.view(target.shape))


@torch.no_grad()
def global_score_masks(scores: list[torch.Tensor], masks: list[torch.Tensor], sparsity: float,
                       absolute: bool = False) -> list[torch.Tensor]:
    """New boolean masks keeping exactly total - round(sparsity * total) entries over all tensors together:
    the highest scores (their absolute values with `absolute`: magnitude pruning straight from the weights)
    among the entries still active (mask != 0); pruned entries are never kept. Among equal scores at the
    threshold the lowest flat index wins (tensors in order, row-major within one): deterministic. If fewer
    entries are active than are to be kept, all active ones are kept. Scores are compared as float32.

    Method: radix select on int32 keys that order like the float32 scores (see `_keys`). A histogram of the
    keys' top 16 bits (65,536 bins, one pass) finds the bin holding the keep-th largest active key; a
    histogram of the low 16 bits of the keys in that bin (a second pass) finds that key, the threshold; a
    third pass writes key >= threshold. Only when not every entry tied at the threshold is kept, the third
    pass marks the first ties tensor by tensor, in flat order, and adds the keys above the threshold.
    Each pass takes one chunk of one tensor at a time (score -> key, count or compare, next), walking each
    tensor in its memory order.

    Why: the schedules take this threshold at every update, over all weights (11.2 M for ResNet-18). A sort,
    `kthvalue` or `topk` needs a flat copy of all scores plus int64 indices or a second copy; bisection on
    the float bit patterns needs the flat copy and 32 counting passes (measured for ResNet-18 on this
    project's 2-core CPU: 2-5 s and 14 bytes of peak extra memory per weight). Three passes over chunks need
    the output booleans (1 byte per weight) and a few MiB of buffers. On a CPU it runs on one thread (see
    `OneThread`)."""
    with OneThread(masks[0].device):
        return _select(scores, masks, sparsity, absolute)


def _select(scores, masks, sparsity: float, absolute: bool) -> list[torch.Tensor]:
    total = sum(m.numel() for m in masks)
    keep = total - round(sparsity * total)
    if keep <= 0:
        return [torch.zeros_like(m, dtype=torch.bool) for m in masks]
    device = masks[0].device
    scratch = _Scratch(device)
    outs = [_bool_like(m) for m in masks]

    def keyed(tensors=range(len(masks))):  # (key, work, active, spare, out) per chunk of the given tensors
        for t in tensors:
            for s, m, o in _chunks(scores[t], masks[t], outs[t]):
                key, work, active, spare = scratch(m.numel())
                _keys(s, m, absolute, key, work, active)
                yield key, work, active, spare, o

    hist = torch.zeros(2 * _HALF, dtype=torch.int64, device=device)  # top 16 bits, offset to 0..65535
    active_count = torch.zeros((), dtype=torch.int64, device=device)
    for key, work, active, _, _ in keyed():
        torch.bitwise_right_shift(key, 16, out=work)
        hist += torch.bincount(work.add_(_HALF), minlength=2 * _HALF)
        active_count += active.count_nonzero()  # (on the float mask: 20x slower with zeros spread about)
    active_count = int(active_count)
    if keep >= active_count:
        return [m != 0 for m in masks]
    pruned = total - active_count
    hist[_ZERO_BIN] -= pruned
    top, above = _bin_of_rank(hist, keep)
    base = (top - _HALF) << 16  # the smallest key in that bin
    lo, hi = base - 1, min(base + (1 << 16), _MAX_KEY)  # within int32: no key is -2^31
    hist = torch.zeros(2 * _HALF + 2, dtype=torch.int64, device=device)  # below, the bin's 65,536 keys, above
    for key, work, _, _, _ in keyed():
        hist += torch.bincount(torch.clamp(key, lo, hi, out=work).sub_(lo), minlength=2 * _HALF + 2)
    in_bin = hist[1:-1]
    if base == 0:
        in_bin[0] -= pruned
    low, above_in_bin = _bin_of_rank(in_bin, keep - above)
    threshold, tied = base + low, int(in_bin[low])
    missing = keep - above - above_in_bin  # tied entries to keep: 1 <= missing <= tied

    if missing == tied:  # every tie kept: the rule with continuous scores
        for key, _, active, _, out in keyed():
            torch.ge(key, threshold, out=out)
            if threshold <= 0:  # pruned entries (key 0) are at or above it
                out.logical_and_(active)
        return outs
    for t in range(len(masks)):  # first the ties to keep, in flat order, then the entries above the threshold
        if missing:
            for key, _, active, _, out in keyed([t]):
                torch.eq(key, threshold, out=out)
                if threshold == 0:
                    out.logical_and_(active)
            found = int(outs[t].count_nonzero())
            if found > missing:
                _keep_first(outs[t], missing)
            missing -= min(found, missing)
        else:
            outs[t].zero_()
        for key, _, active, spare, out in keyed([t]):
            torch.gt(key, threshold, out=spare)
            if threshold < 0:
                spare.logical_and_(active)
            out.logical_or_(spare)
    return outs


def layerwise_score_masks(scores, masks, sparsity: float, absolute: bool = False):
    """Every tensor pruned to the same fraction (each exact to the rounding of its own size)."""
    return [global_score_masks([s], [m], sparsity, absolute)[0] for s, m in zip(scores, masks)]


def global_magnitude_masks(weights, masks, sparsity: float):
    return global_score_masks(weights, masks, sparsity, absolute=True)


SCOPES = {"global": global_score_masks, "layerwise": layerwise_score_masks}


