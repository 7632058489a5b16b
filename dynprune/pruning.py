"""Masks, thresholds and sparsity schedules.

A `Masks` object owns one 0/1 tensor per prunable weight. Pruned weights are kept exactly zero by
multiplying the weights by their masks after every optimizer step, so neither momentum, weight decay nor
Adam state can revive one. Masks only ever lose ones: no regrowth.
"""
from __future__ import annotations

import fnmatch

import torch
from torch import nn

# -- schedules -----------------------------------------------------------------------------------------
# Each is a plain function of the training position `t` in epochs (0.0 = before the first step; an update
# at the start of epoch e sees t = e, one after step i of an epoch with n steps sees e + i / n) and returns
# the target sparsity set at that moment. `end` is the P of the schedule's own source formula.


def _ramp(t: float, start: float, end: float) -> float:
    """0 until `start`, rising linearly to 1 at `end`, 1 afterwards (a step at `start` when end == start)."""
    if end <= start:
        return 1.0 if t >= start else 0.0
    return min(1.0, max(0.0, (t - start) / (end - start)))


def linear_sparsity(t: float, final: float, start: int, end: int) -> float:
    """The seed's schedule, S_e = S * e / P: dense at `start`, `final` from the start of epoch `end` on."""
    return final * _ramp(t, start, end)


def linear_paper_sparsity(t: float, final: float, start: int, end: int) -> float:
    """The later paper's schedule, S_e = S * (e + 1) / P: already S / P in the first epoch of pruning,
    `final` from epoch `end - 1` on."""
    return final * _ramp(t + 1, start, end) if t >= start else 0.0


def cubic_sparsity(t: float, final: float, start: int, end: int) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f)(1 - (t - t0) / (n dt))^3 with s_i = 0: dense at `start`,
    fastest right after it, `final` from `end` on."""
    return final * (1.0 - (1.0 - _ramp(t, start, end)) ** 3)


def oneshot_sparsity(t: float, final: float, start: int, end: int) -> float:
    return final if t >= start else 0.0


SCHEDULES = {"linear": linear_sparsity, "linear_paper": linear_paper_sparsity, "cubic": cubic_sparsity,
             "oneshot": oneshot_sparsity}


def target_sparsity(cfg, t: float) -> float:
    return SCHEDULES[cfg.sparsity_schedule](t, cfg.final_sparsity, cfg.prune_start_epoch, cfg.prune_end)


# -- which tensors are prunable -----------------------------------------------------------------------

def prunable_weights(model: nn.Module, exclude: tuple[str, ...] = ()) -> dict[str, nn.Parameter]:
    """The `weight` of every Conv2d and Linear, minus names matching an `exclude` pattern."""
    found = {}
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            name = f"{module_name}.weight" if module_name else "weight"
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
                found[name] = module.weight
    return found


# -- thresholds ---------------------------------------------------------------------------------------
# One global threshold over millions of weights, taken at every update of a schedule: exact (the achieved
# sparsity is the target to the weight), deterministic, and cheap in time and memory.

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


class _OneThread:
    """`with _OneThread(device):` runs CPU work on one thread. A mask update is a few hundred operations on
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
    `_OneThread`)."""
    with _OneThread(masks[0].device):
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


# -- scores for pruning at initialisation ---------------------------------------------------------------

def random_scores(weights, generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.rand(w.shape, generator=generator).to(w.device) for w in weights]


def snip_scores(model: nn.Module, weights, batches, loss_fn, n_batches: int) -> list[torch.Tensor]:
    """SNIP (Lee et al. 2019): connection saliency |dL/dw * w|, averaged over a few training batches."""
    scores = [torch.zeros_like(w) for w in weights]
    model.train()
    for i, (x, y) in enumerate(batches):
        if i == n_batches:
            break
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        for s, w in zip(scores, weights):
            s.add_((w.grad * w).detach().abs())
    model.zero_grad(set_to_none=True)
    return scores


# -- the masks of one model -----------------------------------------------------------------------------

class Masks:
    def __init__(self, model: nn.Module, exclude: tuple[str, ...] = (), scope: str = "global"):
        self.params = prunable_weights(model, exclude)
        if not self.params:
            raise ValueError("the model has no prunable Conv2d/Linear weights (check prune_exclude)")
        self.scope = scope
        self.names = list(self.params)
        self.weights = list(self.params.values())
        self.masks = [torch.ones_like(w) for w in self.weights]
        self.pruned = False  # any zero in the masks yet? (a dense phase needs no masking work)

    @property
    def total(self) -> int:
        return sum(m.numel() for m in self.masks)

    def zeros(self) -> int:
        return sum(int((m == 0).sum()) for m in self.masks)

    def sparsity(self) -> float:
        """Zeros in the masks / prunable weights."""
        return self.zeros() / self.total

    @torch.no_grad()
    def prune_to(self, sparsity: float, scores: list[torch.Tensor] | None = None) -> None:
        """Tighten the masks to exactly `sparsity` (never loosen them) and zero the newly pruned weights.
        Scores default to |w|: magnitude pruning."""
        with _OneThread(self.masks[0].device):
            # zeros counted on booleans: `zeros()`'s (m == 0).sum() takes 0.1-0.2 s for ResNet-18,
            # count_nonzero on the float masks 60 ms once zeros are spread about (branches), on booleans 5 ms
            if round(sparsity * self.total) <= self.total - sum(int(m.bool().count_nonzero()) for m in self.masks):
                return
            magnitude = scores is None
            new = SCOPES[self.scope](self.weights if magnitude else scores, self.masks, sparsity, absolute=magnitude)
            for mask, keep in zip(self.masks, new):
                # in place, so a second set of float masks never exists; `keep` never holds an entry the mask
                # had already lost, so copying it equals multiplying by it, at a fraction of the cost
                mask.copy_(keep)
            self.pruned = True
            self.apply_()

    @torch.no_grad()
    def prune_layers_to(self, targets: dict[str, float]) -> None:
        """Tighten each named layer to exactly its own sparsity by magnitude within the layer (layer-wise
        IMP with per-layer rates); layers not named keep their masks."""
        for name, weight, mask in zip(self.names, self.weights, self.masks):
            if name in targets and round(targets[name] * mask.numel()) > int((mask == 0).sum()):
                mask.mul_(global_magnitude_masks([weight], [mask], targets[name])[0])
                self.pruned = True
        self.apply_()

    def _like_weights(self, masks) -> list[torch.Tensor]:
        """Masks in each weight's dtype, device and memory layout: a channels-last weight times a contiguous
        mask takes the slow strided path (5.6x slower per masking for a quarter-width ResNet-18, measured)."""
        return [torch.empty_like(w).copy_(m) for m, w in zip(masks, self.weights)]

    @torch.no_grad()
    def apply_(self) -> None:
        torch._foreach_mul_(self.weights, self.masks)

    def layer_report(self) -> list[dict]:
        rows = []
        for name, w, m in zip(self.names, self.weights, self.masks):
            zeros = int((m == 0).sum())
            rows.append(dict(layer=name, shape=list(w.shape), weights=m.numel(), zeros=zeros,
                             sparsity=zeros / m.numel()))
        return rows

    def densities(self) -> dict[str, float]:
        return {n: float(m.mean()) for n, m in zip(self.names, self.masks)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: m.bool().cpu() for n, m in zip(self.names, self.masks)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if list(state) != self.names:
            raise ValueError("mask names do not match the model's prunable weights")
        self.masks = self._like_weights([state[n] for n in self.names])
        self.pruned = not all(bool(m.all()) for m in self.masks)
        self.apply_()

