"""Export a pruned model in a compact file and run it with sparse kernels on CPU.

A pruned model trained by dynprune is a dense model whose pruned weights are zero: as big and as slow as
the unpruned one. `export` writes only the kept weights (CSR or packed-bit masks, whichever is smaller per
layer) into a safetensors file beside a JSON description, and chooses per layer, by timing it on this
machine, whether the layer runs through a sparse kernel or stays dense. `load` rebuilds the network from
the JSON with `build_model`, fills it from the safetensors file (no pickle anywhere) and swaps in the
sparse executors. `measure` reports size and speed against the dense model.

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

import copy
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import store
from .models import build_model
from .pruning import prunable_weights

WEIGHTS, WEIGHTS_FP16, DESCRIPTION = "model.safetensors", "model.fp16.safetensors", "model.json"
KIND = "dynprune.sparse_export"
SMALL_BATCH = 16        # batches below this use the plan timed at batch 1, others the one timed at batch 256
REDUCE_FROM = 128       # columns from which summing rows (embedding_bag) beats MKL's torch.mm (256: yes, 64: no)
CHUNK = 1 << 21         # im2col chunk: at most this many floats (8 MB) per column matrix
NOISE = 0.05            # sparse must be this much faster than dense to be chosen: a tie stays dense
CLEAR = 2.0             # a first timing round with sparse this many times slower (or faster) decides alone


class ExportError(store.StoreError):
    """An export folder that cannot be loaded, worded as one line that names the file and the fix."""


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


def _cpu_layout(model: nn.Module) -> nn.Module:
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


def _eligible(layer: nn.Module) -> bool:
    """Sparse execution covers plain convolutions (any kernel and stride, zero padding) and Linear layers."""
    if isinstance(layer, nn.Linear):
        return True
    return (isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.dilation == (1, 1)
            and layer.padding_mode == "zeros" and isinstance(layer.padding, tuple))


# -- timing -------------------------------------------------------------------------------------------

def _median_s(fn, x, min_time: float, warm_up: bool = True) -> float:
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


def _race(fns: dict, x: torch.Tensor, threads: int, min_time: float, rounds: int,
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
                    times[name].append(_median_s(fn, x, min_time, warm_up=round_ == 0))
                if settled(times):
                    break
    finally:
        torch.set_num_threads(saved)
    return times


def _choose(layer: nn.Module, in_shape: list[int], min_time: float, rounds: int = 3) -> tuple[str, str, dict]:
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
        t = _race({"dense": layer, "sparse": sparse}, x, threads=1, min_time=min_time, rounds=rounds, settled=clear)
        ratios = sorted(s / d for s, d in zip(t["sparse"], t["dense"]))
        ratio = ratios[len(ratios) // 2]
        plans[batch] = "sparse" if ratio < 1 - NOISE else "dense"
        timings[f"batch_{batch}"] = {"dense_us": [round(v * 1e6, 1) for v in t["dense"]],
                                     "sparse_us": [round(v * 1e6, 1) for v in t["sparse"]],
                                     "sparse_over_dense": round(ratio, 3)}
    return plans[256], plans[1], timings


# -- export -------------------------------------------------------------------------------------------

def _sizes(shape: list[int], kept: int, value_bytes: int) -> dict[str, int]:
    """Bytes each storage takes for one layer; CSR indices are int32."""
    rows, numel = shape[0], math.prod(shape)
    return {"csr": 4 * (rows + 1) + (4 + value_bytes) * kept,
            "bitmask": -(-numel // 8) + value_bytes * kept,
            "dense": value_bytes * numel}


def _input_shapes(model: nn.Module, arch: dict, names: list[str]) -> dict[str, list[int]]:
    """The input shape (without the batch) of each named layer, from one forward of a batch of 1."""
    modules, shapes = dict(model.named_modules()), {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, list(i[0].shape[1:])))
             for n in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, arch["in_channels"], arch["side"], arch["side"]))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return shapes


def export(model: nn.Module, masks: dict[str, torch.Tensor], arch: dict, folder: Path, *,
           fp16: bool = False, choose: bool = True, min_time: float = 0.05) -> dict:
    """Write folder/model.safetensors (+ model.fp16.safetensors) and folder/model.json; returns the JSON.

    `masks` maps prunable weight names (as `prunable_weights` gives them) to 0/1 tensors; the weights are
    multiplied by them before export; weights without a mask, biases and BatchNorm are stored dense.
    `arch` holds the kwargs of `build_model`. With `choose`, every masked layer is timed dense vs sparse
    at its input shape at batch 256 and 1 (one thread, about `min_time` s per median, up to 3 rounds per
    batch size, one where the first is clear-cut; `_choose`) and keeps a plan for each: at
    batch 256 sparse kernels can win (the work shrinks with the density), at batch 1 the per-call cost
    of the sparse path (~10 us) often outweighs it, and one plan for both would lose one or the other.
    Without `choose` every masked layer runs sparse (deterministic: for tests, or where timing means
    nothing)."""
    folder = Path(folder)
    prunable = prunable_weights(model)
    unknown = sorted(set(masks) - set(prunable))
    if unknown:
        raise ValueError(f"masks for {unknown} match no Conv2d/Linear weight of the model")
    layer_of = {name: name.removesuffix("weight").removesuffix(".") for name in masks}
    modules = dict(model.named_modules())
    shapes = _input_shapes(model, arch, list(layer_of.values()))

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tensors, layers = {}, {}
    for key, value in state.items():
        if key not in masks:
            tensors[key] = value.float() if value.is_floating_point() else value
            continue
        mask = masks[key].detach().cpu().bool()
        if mask.shape != value.shape:
            raise ValueError(f"mask of {key} has shape {list(mask.shape)}, the weight {list(value.shape)}")
        weight = value.float() * mask
        kept = int(mask.sum())
        sizes = _sizes(list(value.shape), kept, 4)
        storage = "csr" if sizes["csr"] < sizes["bitmask"] else "bitmask"
        if storage == "csr":  # from the mask, not to_sparse_csr(), which would drop kept weights equal to 0.0
            rows = mask.flatten(1)
            tensors[f"{key}:crow"] = torch.cat([torch.zeros(1, dtype=torch.int64), rows.sum(1).cumsum(0)]).int()
            tensors[f"{key}:col"] = rows.nonzero()[:, 1].int().contiguous()
        else:
            tensors[f"{key}:bits"] = store.pack_bits(mask)
        tensors[f"{key}:values"] = weight[mask].contiguous()  # row-major order, as CSR and the bits list them
        layer = layer_of[key]
        module = modules[layer]
        if not _eligible(module):
            large, small, timing = "dense", "dense", None
        elif choose:
            masked = copy.deepcopy(module).cpu().requires_grad_(False)  # timed as it will run: masked, on CPU
            masked.weight = nn.Parameter(weight, requires_grad=False)
            masked = _cpu_layout(masked)
            large, small, timing = _choose(masked, shapes[layer], min_time)
        else:
            large, small, timing = "sparse", "sparse", None
        layers[layer] = {"type": type(module).__name__, "shape": list(value.shape), "kept": kept,
                         "density": round(kept / value.numel(), 6), "storage": storage, "bytes": sizes,
                         "execution": large, "execution_small_batch": small, "input_shape": shapes[layer],
                         "measured": timing}

    description = {
        "kind": KIND, "format": store.FORMAT, "architecture": dict(arch),
        "weights": WEIGHTS, "weights_fp16": WEIGHTS_FP16 if fp16 else None,
        "rules": {"storage": "per layer the smaller of csr (int32 indices) and bitmask",
                  "execution": f"batch >= {SMALL_BATCH}: the plan timed at batch 256; smaller batches: the "
                               f"plan timed at batch 1; sparse only where more than {NOISE:.0%} faster",
                  "chosen_by": "timing, 1 thread" if choose else "not timed: every masked layer sparse"},
        "layers": layers,
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                    for k, v in tensors.items()},
    }
    meta = {"kind": KIND}
    store.save(folder / WEIGHTS, tensors, meta)
    if fp16:  # floats halved; indices, bits and BatchNorm's step counter unchanged
        halved = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        store.save(folder / WEIGHTS_FP16, halved, meta)
    store.write_atomic(folder / DESCRIPTION, json.dumps(description, indent=1))
    return description


# -- load ---------------------------------------------------------------------------------------------

def _refuse(path: Path, what: str) -> ExportError:
    return ExportError(f"{path}: {what}; the files do not belong together or are damaged: export the model again")


def load(path: Path, *, fp16: bool = False) -> nn.Module:
    """The exported model (path: its folder or its model.json), in eval mode, CPU, no gradients.

    With `fp16` the half-precision file is read (values upcast to float32 for the kernels)."""
    path = Path(path)
    json_path = path / DESCRIPTION if path.is_dir() else path
    try:
        description = json.loads(json_path.read_text())
        arch, layers, expected = description["architecture"], description["layers"], description["tensors"]
        if description.get("kind") != KIND or description.get("format") != store.FORMAT:
            raise ValueError(f"kind {description.get('kind')}, format {description.get('format')}")
        for layer, spec in layers.items():
            if (spec["storage"] not in ("csr", "bitmask") or not isinstance(spec["kept"], int)
                    or not isinstance(spec["shape"], list)
                    or {spec["execution"], spec["execution_small_batch"]} - {"sparse", "dense"}):
                raise ValueError(f"layer {layer} is described as {spec}")
        for name, spec in expected.items():
            if not isinstance(spec["shape"], list) or not isinstance(spec["dtype"], str):
                raise ValueError(f"tensor {name} is described as {spec}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{json_path} is not a dynprune export description ({type(e).__name__}: {e}); "
                          f"export the model again") from None
    try:
        model = build_model(**arch)
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{json_path}: architecture {arch} is unknown to dynprune.models.build_model "
                          f"({type(e).__name__}: {e}); export it with a dynprune that knows it") from None

    file = json_path.parent / (WEIGHTS_FP16 if fp16 else WEIGHTS)
    if fp16 and not description.get("weights_fp16"):
        raise ExportError(f"{json_path}: exported without fp16 weights; load without fp16 or export with fp16=True")
    tensors, _ = store.load(file)
    for name, spec in expected.items():
        if name not in tensors:
            raise _refuse(file, f"tensor {name} that {json_path.name} lists is missing")
        dtype = "float16" if fp16 and spec["dtype"] in ("float32", "float16") else spec["dtype"]
        got = tensors[name]
        if list(got.shape) != spec["shape"] or str(got.dtype).removeprefix("torch.") != dtype:
            raise _refuse(file, f"tensor {name} is {str(got.dtype).removeprefix('torch.')} {list(got.shape)}, "
                                f"{json_path.name} says {dtype} {spec['shape']}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise _refuse(file, f"tensors {extra[:3]} are not in {json_path.name}")

    state = {name: value for name, value in tensors.items() if ":" not in name}
    for layer, spec in layers.items():
        key = f"{layer}.weight"
        state[key] = _dense_weight(file, key, spec, tensors)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # fp16 file: upcast
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        raise _refuse(file, f"does not fit {arch['name']}: {lines[-1].strip()}") from None

    modules = dict(model.named_modules())
    plans = {layer: (spec["execution"], spec["execution_small_batch"]) for layer, spec in layers.items()}
    linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    any_sparse_linear = any("sparse" in plans.get(name, ()) for name in linears)
    for name, module in modules.items():
        plan = plans.get(name, ("dense", "dense"))
        if "sparse" in plan and not _eligible(module):
            raise _refuse(json_path, f"{name} cannot run sparse ({module})")
        if "sparse" in plan or (any_sparse_linear and isinstance(module, nn.Linear)):
            parent, _, child = name.rpartition(".")
            setattr(modules[parent], child, SparseLayer(module, *plan, last=name == linears[-1]))
    for seq in model.modules():  # a SparseLayer's output is a fresh tensor: the ReLU after it may overwrite it
        if isinstance(seq, nn.Sequential):
            for before, after in zip(seq, list(seq)[1:]):
                if isinstance(before, SparseLayer) and isinstance(after, nn.ReLU):
                    after.inplace = True
    return _cpu_layout(model).requires_grad_(False).eval()


def _dense_weight(file: Path, key: str, spec: dict, tensors: dict) -> torch.Tensor:
    """The full weight, pruned entries zero, from its CSR or packed-bit storage; malformed indices refused."""
    shape, values = spec["shape"], tensors.get(f"{key}:values")
    if values is None or values.numel() != spec["kept"]:
        stored = None if values is None else values.numel()
        raise _refuse(file, f"{key} holds {stored} values for {spec['kept']} kept weights")
    parts = [":crow", ":col"] if spec["storage"] == "csr" else [":bits"]
    if any(key + part not in tensors for part in parts):
        raise _refuse(file, f"{key} is stored as {spec['storage']} but its {'/'.join(parts)} tensors are missing")
    if spec["storage"] == "csr":
        try:
            csr = torch.sparse_csr_tensor(tensors[f"{key}:crow"], tensors[f"{key}:col"], values,
                                          (shape[0], math.prod(shape[1:])), check_invariants=True)
            return csr.to_dense().view(shape)
        except RuntimeError as e:  # checked: malformed CSR would otherwise read out of bounds
            raise _refuse(file, f"{key} is not a valid CSR matrix ({str(e).splitlines()[0]})") from None
    mask = store.unpack_bits(tensors[f"{key}:bits"], shape)
    if int(mask.sum()) != values.numel():
        raise _refuse(file, f"{key}: the bitmask keeps {int(mask.sum())} weights, {values.numel()} values stored")
    weight = torch.zeros(shape)
    weight[mask] = values
    return weight


# -- measure ------------------------------------------------------------------------------------------

def measure(model_dense: nn.Module, exported_folder: Path, example: torch.Tensor, threads: int = 1, *,
            min_time: float = 0.1, rounds: int = 3) -> dict:
    """Size and CPU speed of the export against the dense (masked) model, same process, interleaved, both in
    the layout a CPU runs them fastest in (`_cpu_layout`).

    Dense size: the safetensors file of the dense fp32 state dict (what an unpruned export would be;
    torch.save's zip of the same state is 0.1 % bigger). Speed: `rounds` rounds, each timing dense then
    export (`_median_s`: blocks of calls lasting about `min_time` s) at batch 1 (latency) and
    batch 256 (throughput; `example` rows repeated), `threads` threads. Ratios are dense / export per
    round, their median and range reported: > 1 means the export wins. Takes about 2 x rounds x
    (2 x min_time + 6 forwards at batch 256)."""
    from safetensors.torch import save as to_bytes
    folder = Path(exported_folder)
    dense = _cpu_layout(copy.deepcopy(model_dense).cpu()).eval()
    dense_state = {k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
                   for k, v in model_dense.state_dict().items()}
    dense_bytes = len(to_bytes(dense_state))
    export_bytes = (folder / WEIGHTS).stat().st_size
    json_bytes = (folder / DESCRIPTION).stat().st_size
    sizes = {"dense_fp32_safetensors_bytes": dense_bytes, "export_bytes": export_bytes, "json_bytes": json_bytes,
             "ratio": round(dense_bytes / export_bytes, 2),
             "ratio_with_json": round(dense_bytes / (export_bytes + json_bytes), 2)}
    if (folder / WEIGHTS_FP16).exists():
        fp16_bytes = (folder / WEIGHTS_FP16).stat().st_size
        sizes |= {"export_fp16_bytes": fp16_bytes, "ratio_fp16": round(dense_bytes / fp16_bytes, 2)}

    exported = load(folder)
    big = example[torch.arange(256) % example.shape[0]].contiguous()
    with torch.inference_mode():
        dense_out, export_out = dense(big), exported(big)
    result = {"threads": threads, "size": sizes,
              "agreement": {"argmax_equal": float((dense_out.argmax(1) == export_out.argmax(1)).float().mean()),
                            "max_abs_logit_diff": float((dense_out - export_out).abs().max())}}
    for batch, x in ((1, example[:1].contiguous()), (256, big)):
        t = _race({"dense": dense, "export": exported}, x, threads, min_time, rounds)
        ratios = sorted(d / e for d, e in zip(t["dense"], t["export"]))  # per round: both timed back to back
        entry = {f"{k}_ms": [round(s * 1e3, 3) for s in v] for k, v in t.items()}
        if batch == 256:
            entry |= {f"{k}_images_per_s": round(256 / sorted(v)[len(v) // 2]) for k, v in t.items()}
        name = "latency_ratio" if batch == 1 else "throughput_ratio"
        entry[name] = round(ratios[len(ratios) // 2], 2)
        entry[f"{name}_range"] = [round(ratios[0], 2), round(ratios[-1], 2)]
        result[f"batch_{batch}"] = entry
    return result
