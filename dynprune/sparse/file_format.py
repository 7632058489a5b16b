"""The export of a pruned network: only the kept weights (CSR or packed-bit masks, whichever is smaller per
layer) in a safetensors file beside a JSON description that names, per layer, whether it runs through a sparse
kernel or stays dense (chosen by timing it on this machine). `load` rebuilds the network from the JSON with
`build_model`, fills it from the safetensors file (no pickle anywhere) and swaps in the sparse executors; a
file that does not match its description is refused in one line.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from torch import nn

from dynprune.core.masks import prunable_weights
from dynprune.core.models import build_model
from dynprune.foundations import storage
from dynprune.sparse.kernels import NOISE, SMALL_BATCH, SparseLayer, choose_plan, cpu_layout, eligible

WEIGHTS, WEIGHTS_FP16, DESCRIPTION = "model.safetensors", "model.fp16.safetensors", "model.json"
KIND = "dynprune.sparse_export"


class ExportError(storage.StoreError):
    """An export folder that cannot be loaded, worded as one line that names the file and the fix."""


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
    batch size, one where the first is clear-cut; `choose_plan`) and keeps a plan for each: at
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
        layout = "csr" if sizes["csr"] < sizes["bitmask"] else "bitmask"
        if layout == "csr":  # from the mask, not to_sparse_csr(), which would drop kept weights equal to 0.0
            rows = mask.flatten(1)
            tensors[f"{key}:crow"] = torch.cat([torch.zeros(1, dtype=torch.int64), rows.sum(1).cumsum(0)]).int()
            tensors[f"{key}:col"] = rows.nonzero()[:, 1].int().contiguous()
        else:
            tensors[f"{key}:bits"] = storage.pack_bits(mask)
        tensors[f"{key}:values"] = weight[mask].contiguous()  # row-major order, as CSR and the bits list them
        layer = layer_of[key]
        module = modules[layer]
        if not eligible(module):
            large, small, timing = "dense", "dense", None
        elif choose:
            masked = copy.deepcopy(module).cpu().requires_grad_(False)  # timed as it will run: masked, on CPU
            masked.weight = nn.Parameter(weight, requires_grad=False)
            masked = cpu_layout(masked)
            large, small, timing = choose_plan(masked, shapes[layer], min_time)
        else:
            large, small, timing = "sparse", "sparse", None
        layers[layer] = {"type": type(module).__name__, "shape": list(value.shape), "kept": kept,
                         "density": round(kept / value.numel(), 6), "storage": layout, "bytes": sizes,
                         "execution": large, "execution_small_batch": small, "input_shape": shapes[layer],
                         "measured": timing}

    description = {
        "kind": KIND, "format": storage.FORMAT, "architecture": dict(arch),
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
    storage.save(folder / WEIGHTS, tensors, meta)
    if fp16:  # floats halved; indices, bits and BatchNorm's step counter unchanged
        halved = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        storage.save(folder / WEIGHTS_FP16, halved, meta)
    storage.write_atomic(folder / DESCRIPTION, json.dumps(description, indent=1))
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
        if description.get("kind") != KIND or description.get("format") != storage.FORMAT:
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
        raise ExportError(f"{json_path}: architecture {arch} is unknown to dynprune.core.models.build_model "
                          f"({type(e).__name__}: {e}); export it with a dynprune that knows it") from None

    file = json_path.parent / (WEIGHTS_FP16 if fp16 else WEIGHTS)
    if fp16 and not description.get("weights_fp16"):
        raise ExportError(f"{json_path}: exported without fp16 weights; load without fp16 or export with fp16=True")
    tensors, _ = storage.load(file)
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
        if "sparse" in plan and not eligible(module):
            raise _refuse(json_path, f"{name} cannot run sparse ({module})")
        if "sparse" in plan or (any_sparse_linear and isinstance(module, nn.Linear)):
            parent, _, child = name.rpartition(".")
            setattr(modules[parent], child, SparseLayer(module, *plan, last=name == linears[-1]))
    for seq in model.modules():  # a SparseLayer's output is a fresh tensor: the ReLU after it may overwrite it
        if isinstance(seq, nn.Sequential):
            for before, after in zip(seq, list(seq)[1:]):
                if isinstance(before, SparseLayer) and isinstance(after, nn.ReLU):
                    after.inplace = True
    return cpu_layout(model).requires_grad_(False).eval()


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
    mask = storage.unpack_bits(tensors[f"{key}:bits"], shape)
    if int(mask.sum()) != values.numel():
        raise _refuse(file, f"{key}: the bitmask keeps {int(mask.sum())} weights, {values.numel()} values stored")
    weight = torch.zeros(shape)
    weight[mask] = values
    return weight
