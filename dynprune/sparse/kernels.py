"""Sparse kernels on the CPU: a pruned Conv2d or Linear run through its CSR weight, and the timing race that
decides per layer whether that beats the dense layer on this machine.

Kernels (torch 2.14 CPU, one thread, measured on the lab's AMD EPYC): a layer is computed as
W_csr @ X^T with X^T row-major, the only layout torch's CSR kernels are fast with (COO, dense @ CSR,
F.linear with a CSR weight and CSR @ a transposed view were 2-10x slower). From 128 columns on, each
output row is summed from the rows of X^T its weights keep, with `F.embedding_bag` (mode "sum", the
weights as per-sample weights): bit for bit what torch's SpMM-reduce kernel (`torch.sparse.mm(csr, dense,
"sum")`) gives, and 1.3-1.5x faster than it at 256 columns, which in turn beats MKL's `torch.mm` there
(1.1-1.5x); below 128 columns MKL wins, and one sample uses MKL's `addmv`. CSR indices are int32, MKL's
own (int64 ones cost a conversion per call, 1.5x at batch 1). Convolutions are im2col + the same product, the batch split so
that a column matrix holds at most 8 MB: a ResNet-18 stage-1 layer's would be 600 MB at batch 256.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SMALL_BATCH = 16        # batches below this use the plan timed at batch 1, others the one timed at batch 256
REDUCE_FROM = 128       # columns from which summing rows (embedding_bag) beats MKL's torch.mm (256: yes, 64: no)
CHUNK = 1 << 21         # im2col chunk: at most this many floats (8 MB) per column matrix
NOISE = 0.05            # sparse must be this much faster than dense to be chosen: a tie stays dense
CLEAR = 2.0             # a first timing round with sparse this many times slower (or faster) decides alone


# -- the sparse executor ----------------------------------------------------------------------------

class SparseLayer(nn.Module):
    """A Conv2d or Linear run as CSR weight @ input columns, or densely, by batch size.

    `large` / `small` are the plans ("sparse" or "dense") for batches of at least / below SMALL_BATCH.
    A sparse Linear returns y as the transposed view of W x^T: a following ReLU keeps that layout and
    the next Linear finds its x^T already contiguous, so a chain of Linear layers transposes only once.
    That is why every Linear of a model with one sparse Linear is a SparseLayer: its dense plan also
    computes W x^T on such input (F.linear on a transposed view was 5x slower for a 100->10 layer), and
    the `last` one hands back contiguous logits."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, large: str, small: str, last: bool = False):
        super().__init__()
        self.large, self.small, self.last = large, small, last
        weight = layer.weight.detach()
        if isinstance(layer, nn.Conv2d):
            weight = weight.contiguous(memory_format=torch.channels_last)  # the layout the network runs in
        self.weight = weight if "dense" in (large, small) else None
        self.csr = _csr(weight) if "sparse" in (large, small) else None
        if self.csr is not None:  # fetched once: each accessor is a dispatcher call on every forward
            self.rows = self.csr.col_indices(), self.csr.crow_indices(), self.csr.values()
        self.bias = None if layer.bias is None else layer.bias.detach()
        self.conv = isinstance(layer, nn.Conv2d)
        if self.conv:
            self.options = layer.stride, layer.padding, layer.dilation, layer.groups
            self.kernel = layer.kernel_size
        self.out_features = weight.shape[0]

    def forward(self, x):
        sparse = (self.large if x.shape[0] >= SMALL_BATCH else self.small) == "sparse"
        if self.conv:
            return self._conv(x) if sparse else F.conv2d(x, self.weight, self.bias, *self.options)
        if x.dim() != 2:
            y = self._linear(x.reshape(-1, x.shape[-1]), sparse).reshape(*x.shape[:-1], self.out_features)
        else:
            y = self._linear(x, sparse)
        return y.contiguous() if self.last else y

    def _mm(self, cols: torch.Tensor) -> torch.Tensor:
        if cols.shape[1] >= REDUCE_FROM:  # row r of W @ cols: the weighted sum of the rows of cols it keeps
            col, crow, values = self.rows
            return F.embedding_bag(col, cols, crow, mode="sum", per_sample_weights=values, include_last_offset=True)
        return torch.mm(self.csr, cols)

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y.add_(self.bias[:, None])

    def _linear(self, x, sparse: bool):
        if not sparse and x.is_contiguous():
            return F.linear(x, self.weight, self.bias)  # exactly what nn.Linear does
        if sparse and x.shape[0] == 1:  # one sample: CSR matrix-vector product, MKL with int32 indices
            return (torch.mv(self.csr, x[0]) if self.bias is None else torch.addmv(self.bias, self.csr, x[0]))[None]
        xt = _row_major(x.t())  # y^T = W x^T needs x^T row-major: free when the previous layer was a sparse Linear
        y = self._mm(xt) if sparse else torch.mm(self.weight, xt)
        return self._add_bias(y).t()

    def _conv(self, x):
        n = x.shape[0]
        stride, (ph, pw) = self.options[0], self.options[1]
        kh, kw = self.kernel
        xc = x.transpose(0, 1).contiguous()  # (C, N, H, W): im2col then yields rows in the weight's order
        if ph or pw:
            xc = F.pad(xc, (pw, pw, ph, ph))
        patches = xc.unfold(2, kh, stride[0]).unfold(3, kw, stride[1])
        ho, wo = patches.shape[2:4]
        patches = patches.permute(0, 4, 5, 1, 2, 3)  # (C, kh, kw, N, Ho, Wo), a view
        k, l = self.csr.shape[1], ho * wo
        step = max(1, CHUNK // (k * l))
        if step >= n:
            y = self._mm(patches.reshape(k, n * l))
        else:
            y = torch.empty(self.out_features, n * l)
            for i in range(0, n, step):
                cols = patches[:, :, :, i:i + step].reshape(k, -1)
                y[:, i * l:i * l + cols.shape[1]] = self._mm(cols)
        y = self._add_bias(y).view(self.out_features, n, ho, wo)
        return y.transpose(0, 1).contiguous()  # N first again (the layers after it take either layout)


def _row_major(t: torch.Tensor) -> torch.Tensor:
    """`t` as a row-major tensor. Copying a transposed (256, 784) float32 input took torch's .contiguous()
    about 1.4x as long as numpy's transposing copy (one thread), and it was roughly 30 % of the whole sparse
    LeNet-300-100's time at batch 256."""
    if t.is_contiguous():
        return t
    if t.dim() == 2 and t.dtype == torch.float32 and not t.requires_grad:
        return torch.from_numpy(np.ascontiguousarray(t.numpy()))
    return t.contiguous()


def cpu_layout(model: nn.Module) -> nn.Module:
    """A conv net in channels-last, as it trains (`channels_last`): at batch 256 a 1/8-width ResNet-18 ran 1.5x
    faster so than in the plain layout on one thread. The export and the dense network it is measured against
    both run so; timing one in the slower layout made exports look 0.7-0.8x as fast as dense."""
    return model.to(memory_format=torch.channels_last) if any(isinstance(m, nn.Conv2d) for m in model.modules()) else model


def _csr(weight: torch.Tensor) -> torch.Tensor:
    """The weight as a (rows, fan-in) CSR matrix with int32 indices (MKL's own: int64 ones cost a copy)."""
    with warnings.catch_warnings():  # "CSR support is in beta", once per process: not the user's concern
        warnings.simplefilter("ignore", UserWarning)
        c = weight.flatten(1).to_sparse_csr()
        return torch.sparse_csr_tensor(c.crow_indices().int(), c.col_indices().int(), c.values(), c.shape,
                                       check_invariants=False)  # valid by construction


def eligible(layer: nn.Module) -> bool:
    """Sparse execution covers plain convolutions (any kernel and stride, zero padding) and Linear layers."""
    if isinstance(layer, nn.Linear):
        return True
    return (isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.dilation == (1, 1)
            and layer.padding_mode == "zeros" and isinstance(layer.padding, tuple))


# -- timing -------------------------------------------------------------------------------------------

def seconds_per_call(fn, x, min_time: float, warm_up: bool = True) -> float:
    """Seconds per call, after one warm-up call: one call when a call alone lasts `min_time`, else the median
    of three blocks of calls that together last about `min_time`. (This is torch.utils.benchmark's
    blocked_autorange without its ~10 ms minimum block, which made the timing of a small layer cost 20 ms per
    median, and the export of a tiny run seconds.)"""
    if warm_up:
        fn(x)
    start = time.perf_counter()
    fn(x)
    once = time.perf_counter() - start
    if once >= min_time:
        return once
    number, blocks = max(1, int(min_time / 3 / once)), []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(number):
            fn(x)
        blocks.append((time.perf_counter() - start) / number)
    return sorted(blocks)[1]


def race(fns: dict, x: torch.Tensor, threads: int, min_time: float, rounds: int,
          settled=lambda times: False) -> dict[str, list[float]]:
    """Seconds per call of each fn, up to `rounds` medians each (fewer once `settled(times)` says so),
    interleaved (A B A B) so that a burst of load from other processes hits both sides; `threads` threads."""
    times = {name: [] for name in fns}
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for round_ in range(rounds):
                for name, fn in fns.items():  # warmed up in the first round
                    times[name].append(seconds_per_call(fn, x, min_time, warm_up=round_ == 0))
                if settled(times):
                    break
    finally:
        torch.set_num_threads(saved)
    return times


def choose_plan(layer: nn.Module, in_shape: list[int], min_time: float, rounds: int = 3) -> tuple[str, str, dict]:
    """(large, small, timings): per batch size, sparse only if it beat dense by more than NOISE in the
    median round. Each round times dense and sparse back to back, so their ratio is fairly immune to load
    from other processes (which moved single timings by +-30 % on a shared machine), and the median
    ignores one round spoiled anyway; a close call stays dense. A first round that is off by more than
    CLEAR either way settles it alone (the export of a small ResNet spent most of its time re-timing
    convolutions whose sparse form was several times slower)."""
    sparse = SparseLayer(layer, "sparse", "sparse")
    plans, timings = {}, {}
    clear = lambda t: not CLEAR > t["sparse"][0] / t["dense"][0] > 1 / CLEAR  # noqa: E731
    for batch in (256, 1):
        x = torch.randn(batch, *in_shape)  # the kernels' speed does not depend on the values
        if isinstance(layer, nn.Conv2d):
            x = x.contiguous(memory_format=torch.channels_last)  # as the layer before hands it on
        t = race({"dense": layer, "sparse": sparse}, x, threads=1, min_time=min_time, rounds=rounds, settled=clear)
        ratios = sorted(s / d for s, d in zip(t["sparse"], t["dense"]))
        ratio = ratios[len(ratios) // 2]
        plans[batch] = "sparse" if ratio < 1 - NOISE else "dense"
        timings[f"batch_{batch}"] = {"dense_us": [round(v * 1e6, 1) for v in t["dense"]],
                                     "sparse_us": [round(v * 1e6, 1) for v in t["sparse"]],
                                     "sparse_over_dense": round(ratio, 3)}
    return plans[256], plans[1], timings
