"""Guards for the behaviours a number rests on, each written against a bug that once passed every other test
(issue 26's surviving mutants). Oracles are independent of the code under test: weights and masks read from the
model itself, hand-computed epochs and file states, identical images where augmentation is the only difference."""
from __future__ import annotations

import errno
import io
import json
import os
import socket

import pytest
import torch

from dynprune.config import build
from dynprune.core.data import Data
from dynprune.core.schedules import cubic_sparsity, linear_sparsity, target_sparsity
from dynprune.core.train import make_batches, train
from dynprune.lottery import imp as lottery_imp
from dynprune.lottery import ticket_check
from dynprune.runs import identity
from dynprune.runs.paths import RunFolder

from conftest import PROJECT, in_memory_data, tiny_config

QUIET = dict(log=lambda _: None)


# -- 1. pruned weights are exactly zero, on every training path -------------------------------------------------

def pruned_but_nonzero(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(weights where the mask is 0 but the model's parameter is not, weights the masks prune), read from the
    model's own parameters by name: not from Masks.weights, not from a summary."""
    params = dict(model.named_parameters())
    bad = pruned = 0
    for name, mask in masks.items():
        off = ~mask.bool().cpu()
        bad += int((off & (params[name].detach().cpu() != 0)).sum())
        pruned += int(off.sum())
    return bad, pruned


def assert_exactly_zero(run, *, expect_pruned: bool = True) -> None:
    bad, pruned = pruned_but_nonzero(run.model, run.masks.state_dict())
    assert bad == 0, f"{bad} pruned weights are non-zero"
    if expect_pruned:
        assert pruned > 0, "nothing was pruned: the check would be vacuous"


def test_dynamic_pruning_leaves_pruned_weights_exactly_zero():
    assert_exactly_zero(train(tiny_config(epochs=3, final_sparsity=0.75), in_memory_data(), **QUIET))


@pytest.mark.parametrize("method", ["random", "random_layerwise", "snip"])
def test_pruning_at_initialisation_leaves_pruned_weights_exactly_zero(method):
    assert_exactly_zero(train(tiny_config(method=method, epochs=2, final_sparsity=0.75), in_memory_data(), **QUIET))


def checking(module, monkeypatch) -> list:
    """Wrap `module.train` so that every run it trains is checked as soon as it returns."""
    real, checked = module.train, []

    def wrapper(*args, **kwargs):
        run = real(*args, **kwargs)
        fixed = kwargs.get("fixed_masks") is not None
        assert_exactly_zero(run, expect_pruned=fixed)
        checked.append((kwargs.get("start_step", 0), fixed, kwargs.get("init_state") is not None))
        return run
    monkeypatch.setattr(module, "train", wrapper)
    return checked


def test_every_imp_level_and_its_reinit_control_leave_pruned_weights_exactly_zero(tmp_path, monkeypatch):
    checked = checking(lottery_imp, monkeypatch)
    cfg = tiny_config(method="imp", epochs=2, final_sparsity=0.75, imp_rate=0.5, rewind_step=2, imp_reinit=1)
    _, extra = lottery_imp.run_imp(cfg, in_memory_data(), RunFolder(tmp_path), identity.identity(cfg), **QUIET)
    assert [round(r["sparsity"], 4) for r in extra["levels"]] == [0.0, 0.5, 0.75]
    assert len(checked) == 5  # the dense level, two pruned levels, and each one's re-initialisation control


def test_every_ticket_variant_leaves_pruned_weights_exactly_zero(tmp_path, monkeypatch):
    data = in_memory_data()
    source = train(tiny_config(epochs=2, final_sparsity=0.75, rewind_step=3), data, **QUIET)
    ticket = dict(masks=source.masks.state_dict(), init_state=source.init_state, rewind_state=source.rewind_state)
    checked = checking(ticket_check, monkeypatch)
    cfg = tiny_config(epochs=2, final_sparsity=0.75, rewind_step=3)
    summaries = ticket_check.check_ticket(cfg, data, ticket, RunFolder(tmp_path), {"run": 1}, save=lambda *_: {},
                                          finished=lambda *_: None, **QUIET)
    assert sorted(summaries) == ["random_mask", "reinit", "rewind_init", "rewind_k"]
    assert len(checked) == 4 and all(fixed for _, fixed, _ in checked)


class Interrupted(Exception):
    pass


def interrupt_at(line_start: str):
    def log(text: str) -> None:
        if text.startswith(line_start):
            raise Interrupted(text)
    return log


@pytest.mark.parametrize("fixed", [False, True], ids=["dynamic", "fixed masks"])
def test_a_resumed_run_leaves_pruned_weights_exactly_zero(tmp_path, fixed):
    """Interrupted in epoch 3 of 4 (its checkpoint holds epoch 2), then resumed: the schedule reached its target in
    epoch 2, so after the resume nothing prunes again and only the restored masks keep the weights at zero."""
    data = in_memory_data()
    cfg = tiny_config(epochs=4, final_sparsity=0.75, prune_end_epoch=1)
    masks = None
    if fixed:  # a fixed mask (an IMP level, a ticket) resumed from its checkpoint
        masks = train(tiny_config(epochs=1, final_sparsity=0.75, sparsity_schedule="oneshot"),
                      data, **QUIET).masks.state_dict()
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(Interrupted):
        train(cfg, data, log=interrupt_at("epoch 3/4"), checkpoint=checkpoint, fixed_masks=masks, identity_key="k")
    lines = []
    run = train(cfg, data, log=lines.append, checkpoint=checkpoint, fixed_masks=masks, identity_key="k")
    assert "resuming from checkpoint.pt after epoch 2" in lines and len(run.history) == 4
    assert_exactly_zero(run)


LENET_WEIGHTS = {"net.1.weight": (75, 784), "net.3.weight": (25, 75), "net.5.weight": (10, 25)}  # at width 0.25


def ddp_rank(rank: int, port: int, out) -> None:
    """One of two gloo processes (forked: torch is already imported) training a fixed random mask."""
    try:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
        g = torch.Generator().manual_seed(5)  # the same mask on both ranks
        masks = {n: torch.rand(s, generator=g) > 0.75 for n, s in LENET_WEIGHTS.items()}
        run = train(tiny_config(epochs=2), in_memory_data(), fixed_masks=masks, **QUIET)
        bad, pruned = pruned_but_nonzero(run.model, masks)
        result = dict(bad=bad, pruned=pruned, world=torch.distributed.get_world_size(),
                      rank=torch.distributed.get_rank())
    except BaseException as e:  # noqa: BLE001 - reported to the test
        result = dict(error=f"{type(e).__name__}: {e}")
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    os._exit(0)


@pytest.mark.ddp
def test_two_ddp_ranks_leave_pruned_weights_exactly_zero(tmp_path):
    """Two gloo processes train a fixed mask (what an IMP level or ticket check does across processes); each rank
    counts, on its own copy of the model, the pruned weights that are not zero."""
    import multiprocessing

    import torch._dynamo  # noqa: F401 - what an optimizer loads on first use (seconds): once here, not per rank
    import torch.nn.parallel  # noqa: F401
    from dynprune.core.models import build_model
    model = build_model("lenet_300_100", 1, 10, 28, 0.25)
    assert {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")} == LENET_WEIGHTS
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fork = multiprocessing.get_context("fork")
    procs = [fork.Process(target=ddp_rank, args=(r, port, tmp_path)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for r in range(2):
        result = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert "error" not in result, result["error"]
        assert result["world"] == 2 and result["rank"] == r and result["pruned"] > 0
        assert result["bad"] == 0, f"rank {r}: {result['bad']} pruned weights are non-zero"


# -- 5. the staleness rule: every module of core/ and lottery/ counts ----------------------------------------

def test_an_edit_to_any_training_module_changes_the_fingerprint(tmp_path, monkeypatch):
    import shutil
    copy = tmp_path / "dynprune"
    shutil.copytree(PROJECT / "dynprune", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(identity, "PACKAGE", copy)
    import functools
    monkeypatch.setattr(identity, "code_text", functools.cache(identity.code_text))  # parse each text once
    identity.training_code.cache_clear()
    try:
        before = identity.training_code()
        modules = [p for sub in ("core", "lottery") for p in sorted((copy / sub).glob("*.py"))
                   if identity.code_text(p.read_text())]
        assert len(modules) >= 15 and any(p.parent.name == "lottery" for p in modules)
        for path in modules:
            original = path.read_text()
            path.write_text(original + "\n_guard = 1\n")
            identity.training_code.cache_clear()
            assert identity.training_code() != before, f"{path.relative_to(copy)} is not in the training code"
            path.write_text(original)
        identity.training_code.cache_clear()
        assert identity.training_code() == before
    finally:
        identity.training_code.cache_clear()


# -- 7-8. durability: the summary is written atomically; files of another store format are refused ----------

class FailsHalfway:
    """A file whose first write stores half the data and then finds the disk full."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False

    def __getattr__(self, name):
        return getattr(self.f, name)


def disk_full_for(monkeypatch, word: str) -> None:
    """Every way of opening a file (open, Path.write_*, os.fdopen) yields one that fails half-way when its name
    holds `word`: whichever way the code writes it."""
    real_open, real_fdopen = io.open, os.fdopen

    def opened(file, *args, **kwargs):
        f = real_open(file, *args, **kwargs)
        return FailsHalfway(f) if isinstance(file, (str, os.PathLike)) and word in os.fspath(file) else f

    def fdopened(fd, *args, **kwargs):
        name = os.readlink(f"/proc/self/fd/{fd}")
        f = real_fdopen(fd, *args, **kwargs)
        return FailsHalfway(f) if word in name else f
    monkeypatch.setattr(io, "open", opened)
    monkeypatch.setattr("builtins.open", opened)
    monkeypatch.setattr(os, "fdopen", fdopened)


def test_a_disk_full_while_writing_the_summary_leaves_no_summary(tmp_path, monkeypatch):
    from dynprune.core.checkpoint import TrainingError
    from dynprune.runs.run_folder import save_run
    cfg = tiny_config(epochs=1)
    run = train(cfg, in_memory_data(), **QUIET)
    folder = RunFolder(tmp_path / "run")
    disk_full_for(monkeypatch, "summary.json")
    with pytest.raises(TrainingError, match="cannot write the results"):
        save_run(run, folder, "paper", identity.identity(cfg))
    monkeypatch.undo()
    assert folder.ticket.is_file()  # everything before the summary was written
    assert not folder.summary.exists(), "a half-written summary.json would count as a finished run"
    assert not [p.name for p in folder.path.iterdir() if "summary" in p.name]  # nor a temporary file left behind


def rewrite_format(path, fmt) -> None:
    """The same tensors and metadata, with the store's format field set to `fmt` (None: removed)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    header = json.loads(meta["dynprune"])
    header.pop("format")
    if fmt is not None:
        header["format"] = fmt
    save_file(load_file(str(path)), str(path), metadata={"dynprune": json.dumps(header)})


@pytest.mark.parametrize("fmt", [2, 0, "1", None])
def test_a_run_folder_of_another_store_format_is_refused(tmp_path, fmt):
    from dynprune.foundations import storage
    from dynprune.runs.run_folder import load_ticket, save_ticket
    assert storage.FORMAT == 1  # the format this test's other values differ from
    run = train(tiny_config(epochs=1), in_memory_data(), **QUIET)
    path = tmp_path / "ticket.safetensors"
    save_ticket(path, run)
    assert torch.equal(load_ticket(path)["masks"]["net.1.weight"], run.masks.state_dict()["net.1.weight"])
    rewrite_format(path, fmt)
    with pytest.raises(storage.StoreError, match="not a dynprune file of format 1"):
        load_ticket(path)


# -- 10. augmentation: training batches augmented, evaluation batches untouched -------------------------------

def same_image_data(n: int = 64) -> tuple[Data, torch.Tensor]:
    """n copies of one asymmetric 32x32 colour image: whatever order the batches take, the only thing that can
    make a training image differ from it is augmentation."""
    g = torch.Generator().manual_seed(11)
    image = torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8)
    x, y = image.expand(n, 3, 32, 32).clone(), torch.zeros(n, dtype=torch.long)
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
    data = Data((x, y), (x[:16], y[:16]), (x[:16], y[:16]), ["a", "b"], mean, std, "in memory")
    expected = (image.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return data, expected


@pytest.mark.parametrize("setting, share", [
    (dict(crop_padding=4), 0.75), (dict(hflip=True), 0.25), (dict(rotation=30.0), 0.75),
    (dict(translate=0.2), 0.75), (dict(jitter=0.4), 0.75), (dict(jitter_hue=0.1), 0.75), (dict(erasing=1.0), 0.75),
    (dict(), None)], ids=["crop", "hflip", "rotation", "translate", "jitter", "hue", "erasing", "none"])
def test_each_augmentation_changes_training_images_and_never_evaluation_images(setting, share):
    data, expected = same_image_data()
    cfg = tiny_config(dataset="cifar10", batch_size=64, **setting)
    train_batches, val, test = make_batches(cfg, data, torch.device("cpu"))
    for batches in (val, test):
        (x, _), = list(batches)
        assert torch.allclose(x, expected.expand_as(x), atol=1e-6)
    for epoch in (0, 1):
        (x, y), = list(train_batches.epoch(epoch))
        assert len(x) == 64 and torch.equal(y, torch.zeros(64, dtype=torch.long))
        changed = int(((x - expected).abs().flatten(1).amax(1) > 1e-4).sum())
        if share is None:  # no augmentation: every training image is the image itself
            assert changed == 0
        else:
            assert changed >= share * 64, f"only {changed} of 64 training images augmented"


# -- 11. schedules with start == end; the epoch in which the target is reached -----------------------------

def test_a_ramp_whose_start_equals_its_end_steps_at_that_epoch():
    """start = end = 3: dense through epoch index 2 (and within it), final from the first step of index 3."""
    for schedule in (linear_sparsity, cubic_sparsity):
        assert [schedule(t, 0.8, 3, 3) for t in (0, 2, 2.5, 2.99, 3, 3.5, 4)] == [0, 0, 0, 0, 0.8, 0.8, 0.8]
    cfg = build(dict(epochs=6, final_sparsity=0.8, prune_start_epoch=3, prune_end_epoch=3))
    assert [target_sparsity(cfg, e) for e in range(6)] == [0, 0, 0, 0.8, 0.8, 0.8]


@pytest.mark.parametrize("schedule, start, end, epochs, reached", [
    ("linear", 0, 4, 10, 5),          # S_e = S * e / 4: 0-based epoch 4 is the 5th
    ("cubic", 0, 4, 10, 5),           # reaches S where the ramp does, as linear
    ("adaptive", 0, 4, 10, 5),        # linear's targets
    ("linear_paper", 0, 4, 10, 4),    # S_e = S * (e + 1) / 4: 0-based epoch 3 is the 4th
    ("oneshot", 2, None, 10, 3),      # all at once at 0-based epoch 2, the 3rd
    ("linear", 3, 3, 10, 4),          # a step at 0-based epoch 3, the 4th
    ("linear", 0, None, 30, 30),      # null end: reached in the last epoch
    ("linear_paper", 0, None, 30, 30),
])
def test_the_heading_names_the_epoch_the_target_is_reached_in(schedule, start, end, epochs, reached):
    from dynprune.config.describe import describe
    cfg = build(dict(epochs=epochs, final_sparsity=0.8, sparsity_schedule=schedule, prune_start_epoch=start,
                     prune_end_epoch=end))
    assert f"the target reached in epoch {reached})" in describe(cfg)


def test_a_trained_runs_history_reaches_the_target_in_the_epoch_the_heading_names():
    """The same rule, read from what training did: history rows are 1-based epochs with the target they held."""
    from dynprune.config.describe import describe
    cfg = tiny_config(epochs=4, final_sparsity=0.75, prune_start_epoch=2, prune_end_epoch=2)
    run = train(cfg, in_memory_data(), **QUIET)
    assert [r["target_sparsity"] for r in run.history] == [0, 0, 0.75, 0.75]
    assert [r["epoch"] for r in run.history] == [1, 2, 3, 4]
    assert "the target reached in epoch 3)" in describe(cfg)


# -- strict CI: with CI=true nothing but a GPU test skips ---------------------------------------------------------

STRICT_CASES = '''
import pytest

@pytest.fixture
def daemon():
    pytest.skip("no daemon here")

@pytest.mark.skipif(True, reason="chromium is not installed")
def test_marked():
    pass

def test_fixture(daemon):
    pass

def test_body():
    pytest.skip("data set not found")

@pytest.mark.gpu
@pytest.mark.skipif(True, reason="no CUDA GPU here")
def test_gpu():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
'''


@pytest.mark.parametrize("ci", ["true", None])
def test_under_ci_a_skip_fails_with_its_reason_and_only_gpu_tests_may_skip(tmp_path, ci):
    import subprocess
    import sys
    (tmp_path / "test_cases.py").write_text(STRICT_CASES)
    (tmp_path / "test_module_skip.py").write_text('import pytest\npytest.importorskip("no_such_module_here")\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs a CUDA GPU\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {}) | {
        "PYTHONPATH": str(PROJECT / "tests")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "strict_ci", "-p", "no:cacheprovider", "-rA",
                           "--continue-on-collection-errors", "-c", str(tmp_path / "pytest.ini"), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    if ci:
        assert proc.returncode == 1, out
        for name, reason in (("test_marked", "chromium is not installed"), ("test_fixture", "no daemon here"),
                             ("test_body", "data set not found")):
            line = next(x for x in out.splitlines() if f"::{name} " in x and x.startswith(("FAILED", "ERROR")))
            assert "skipped under CI=true" in line and reason in line, line
        assert "ERROR" in out and "test_module_skip.py" in out and "no_such_module_here" in out
        assert "SKIPPED [1] test_cases.py" in out and "no CUDA GPU here" in out  # the GPU test, alone
        assert "XFAIL" in out and "PASSED test_cases.py::test_passes" in out
    else:
        assert proc.returncode == 0, out
        assert out.splitlines()[-1].strip("= ").startswith("1 passed, 5 skipped, 1 xfailed in"), out
