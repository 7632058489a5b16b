"""One run across processes with torch.distributed: gloo on the CPU, two processes, as torchrun starts them."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_mnist

pytestmark = [pytest.mark.ddp, pytest.mark.e2e]
REAL = Path(os.environ.get("DYNPRUNE_DATA", "/nonexistent")) / "MNIST" / "raw"
FLAGS = ["--dataset", "mnist", "--model", "lenet_300_100", "--init", "kaiming_fan_in", "--batch-size", "64",
         "--lr", "0.05", "--final-sparsity", "0.9", "--no-download", "--device", "cpu", "--threads", "1"]


def torchrun(n: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m", "dynprune"]


def summary(out: Path) -> dict:
    return json.loads((out / "seed42" / "summary.json").read_text())


def test_two_processes_train_like_one_and_a_killed_rank_resumes_with_identical_masks_on_every_rank(tmp_path):
    """One run in two processes, one of them killed in the last epoch, then started again, against the same run in
    one process. On real MNIST when it is there (the accuracies must agree), else on tiny learnable digits."""
    data = REAL.parent.parent if REAL.is_dir() else make_mnist(tmp_path / "data", n_train=12000, n_test=500)
    env = os.environ | {"DYNPRUNE_DATA": str(data), "DYNPRUNE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    flags = FLAGS + ["--epochs", "3", "--train-subset", "12000", "--prune-every-steps", "25"]
    one = subprocess.run([sys.executable, "-m", "dynprune", "train", *flags, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]

    command = torchrun(2) + ["train", *flags, "--out", str(tmp_path / "two")]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "two" / "seed42" / "train.log"
    deadline = time.time() + 180
    while time.time() < deadline and not (log.is_file() and "epoch 2/3" in log.read_text()):
        time.sleep(0.1)
    assert log.is_file() and "epoch 2/3" in log.read_text(), "the run never reached its last epoch"
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
    assert workers, "no worker processes found"
    os.kill(max(workers), signal.SIGKILL)  # one rank dies
    assert proc.wait(timeout=120) != 0
    assert (tmp_path / "two" / "seed42" / "checkpoint.pt").is_file()
    assert not (tmp_path / "two" / "seed42" / "summary.json").exists()

    two = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    resumed_after = int(re.search(r"resuming from \S+ after epoch (\d+)", log.read_text()).group(1))
    a, b = summary(tmp_path / "one"), summary(tmp_path / "two")
    for s in (a, b):
        assert s["epochs"] == 3 and s["pruned_weights"] == round(0.9 * s["prunable_weights"])
        assert s["pruned_but_nonzero"] == 0
    assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.3, (a["test_accuracy"], b["test_accuracy"])
    assert a["test_accuracy"] > 90
    steps = -(-12000 // 64)
    updates = len([s for s in range(resumed_after * steps, 3 * steps) if s % 25 == 0])  # since the resume
    assert b["mask_checks_across_processes"] == updates  # both ranks compared their masks at every update (a
    assert "mask_checks_across_processes" not in a       # difference would have stopped the run: RankMismatch)
    assert json.loads((tmp_path / "two" / "seed42" / "environment.json").read_text())["processes"] == 2
    assert two.stdout.count("final model:") == 1  # only rank 0 speaks (and writes)


def test_a_parameter_file_with_processes_trains_through_torchrun(tmp_path, monkeypatch):
    """`processes: 2` in a profile or file: the lifecycle starts torchrun itself (what a notebook render does)."""
    from dynprune.config import build, runs_of
    from dynprune.runs.lifecycle import ensure
    data = make_mnist(tmp_path / "data", n_train=1200, n_test=200)
    monkeypatch.setenv("DYNPRUNE_DATA", str(data))
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = build(dict(dataset="mnist", model="lenet_300_100", init="kaiming_fan_in", width=0.25, epochs=2, batch_size=32,
                     lr=0.05, final_sparsity=0.5, download=False, device="cpu", processes=2, threads=1))
    run = runs_of(cfg)[0]
    outcome = ensure(run, tmp_path / "out" / run.folder, "paper", root=tmp_path / "out", log=lambda _: None)
    assert outcome.action == "trained" and outcome.summary["sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert json.loads((outcome.folder / "environment.json").read_text())["processes"] == 2
    again = ensure(run, tmp_path / "out" / run.folder, "paper", root=tmp_path / "out", log=lambda _: None)
    assert again.action == "reused"
