"""Files on disk: written atomically, never through a symbolic link, read without pickle.

Run folders, results and parameter files come from other people, and a link planted where dynprune writes would
make it overwrite or append to a file elsewhere. So every file is created without following a link (a link where
dynprune writes is refused in one line naming it), appended to only as itself, and a whole tree is checked for
links below its base (`no_links`) before anything is written into it. Links at or above the base — a results
folder that is a link to another disk — are the user's own setup.

Tensors go into safetensors files (a JSON header and raw buffers: reading one cannot run code), with the
plain metadata of the file as JSON inside the header. Masks are stored as packed bits (1 bit per weight)
and pruned weights as the values of their surviving entries only, so a level of an iterative-pruning run
at 80 % sparsity costs about 0.9 bytes per prunable weight instead of 9.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
from pathlib import Path

FORMAT = 1  # bump when the layout below changes: files of another format are refused, never misread


class StoreError(ValueError):
    """A file that cannot be read as what it claims to be, worded as one line."""


class LinkError(StoreError):
    """A symbolic link where dynprune would write, worded as one line that names it."""


def _link(path: Path) -> LinkError:
    return LinkError(f"{path} is a symbolic link; dynprune never writes through one: remove it (or write elsewhere)")


def no_links(path: Path, base: Path) -> Path:
    """`path`, when no part of it below `base` is a symbolic link (or `path` lies outside `base`: then nothing is
    checked here); else one line naming the link."""
    path, base = Path(path).absolute(), Path(base).absolute()
    if base not in path.parents:
        return path
    for part in [*reversed(path.parents[:len(path.parents) - len(base.parents) - 1]), path]:
        if part.is_symlink():
            raise _link(part)
    return path


def _open(path: Path, flags: int) -> int:
    """os.open without following a link at `path` itself."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _link(path) from None
        raise


def open_for_append(path: Path):
    """A text file (created if missing) opened to append to, refused if it is a link."""
    return os.fdopen(_open(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a")


def append_text(path: Path, text: str) -> None:
    with open_for_append(path) as f:
        f.write(text)


def stable_key(obj) -> str:
    """A short name for a JSON-able value that is the same in every process: what identities are keyed by."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a fresh temporary file beside `path`, then rename: readers never see half a file, and a link at
    `path` is replaced, not followed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover of this process id, or a link planted there: never written through
    try:
        with os.fdopen(_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise


# -- masks as bits ------------------------------------------------------------------------------------

def _bit_weights():
    import torch
    return torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(mask):
    """A boolean tensor as uint8, eight entries per byte (first entry in the highest bit)."""
    import torch
    flat = mask.detach().flatten().bool().cpu()
    padded = torch.zeros(-(-flat.numel() // 8) * 8, dtype=torch.uint8)
    padded[:flat.numel()] = flat
    return (padded.view(-1, 8) * _bit_weights()).sum(1, dtype=torch.uint8)


def unpack_bits(packed, shape):
    n = 1
    for d in shape:
        n *= d
    bits = (packed.view(-1, 1) & _bit_weights()).ne(0).flatten()
    if bits.numel() < n or bits.numel() - n >= 8:
        raise StoreError(f"packed mask of {packed.numel()} bytes cannot hold shape {list(shape)}")
    return bits[:n].view(*shape)


# -- states: sparse where masked ------------------------------------------------------------------------

def pack_state(state: dict, masks: dict | None = None, prefix: str = "") -> tuple[dict, dict]:
    """(tensors, layout) for a state dict; each masked tensor is stored as its mask bits and surviving
    values. `prefix` keeps several states apart in one file."""
    masks = masks or {}
    tensors, layout = {}, {}
    for key, value in state.items():
        value = value.detach().cpu()
        if key in masks:
            mask = masks[key].bool().cpu()
            tensors[f"{prefix}{key}:bits"] = pack_bits(mask)
            tensors[f"{prefix}{key}:values"] = value[mask].contiguous()
            layout[key] = {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch."), "masked": True}
        else:
            tensors[f"{prefix}{key}"] = value.contiguous()
            layout[key] = {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch."), "masked": False}
    return tensors, layout


def unpack_state(tensors: dict, layout: dict, prefix: str = "") -> dict:
    """The state dict `pack_state` stored: pruned entries are exactly zero."""
    import torch
    state = {}
    for key, spec in layout.items():
        if spec["masked"]:
            mask = unpack_bits(tensors[f"{prefix}{key}:bits"], spec["shape"])
            values = tensors[f"{prefix}{key}:values"]
            if values.numel() != int(mask.sum()):
                raise StoreError(f"{key}: {values.numel()} stored values for {int(mask.sum())} kept weights")
            full = torch.zeros(spec["shape"], dtype=values.dtype)
            full[mask] = values
            state[key] = full
        else:
            state[key] = tensors[f"{prefix}{key}"]
        if list(state[key].shape) != spec["shape"]:
            raise StoreError(f"{key}: stored shape {list(state[key].shape)}, expected {spec['shape']}")
    return state


def masks_of(tensors: dict, layout: dict, prefix: str = "") -> dict:
    """The boolean masks of the masked entries of a packed state."""
    return {key: unpack_bits(tensors[f"{prefix}{key}:bits"], spec["shape"])
            for key, spec in layout.items() if spec["masked"]}


# -- files ----------------------------------------------------------------------------------------------

def save(path: Path, tensors: dict, meta: dict) -> None:
    """One safetensors file holding `tensors` and the JSON-able `meta`, written atomically."""
    from safetensors.torch import save as to_bytes
    header = json.dumps({"format": FORMAT, **meta}, allow_nan=False)
    write_atomic(path, to_bytes(tensors, metadata={"dynprune": header}))


def load(path: Path) -> tuple[dict, dict]:
    """(tensors, meta) of a file `save` wrote; anything else is refused with one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load as from_bytes
    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = from_bytes(data)
        meta = json.loads(_header_metadata(data).get("dynprune", "null"))
    except (OSError, SafetensorError, ValueError, KeyError) as e:
        raise StoreError(f"{path} cannot be read as a dynprune file ({type(e).__name__}); "
                         f"it is damaged or not one: delete it to recompute it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError(f"{path} is not a dynprune file of format {FORMAT}; delete it to recompute it")
    return tensors, meta


def _header_metadata(data: bytes) -> dict:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]).get("__metadata__", {})


# -- locks ----------------------------------------------------------------------------------------------

class Busy(RuntimeError):
    """Another process holds a lock, worded as one line that names it."""


@contextlib.contextmanager
def locked(path: Path, what: str, wait: bool = False):
    """Hold an exclusive lock on `path` (created if missing) for the block: a second writer stops with one
    line naming the holder (or, with `wait`, waits for it). The kernel releases the lock when the holder
    dies, so a killed run never leaves its folder locked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise Busy(f"{what} is in use by {holder}; wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)
