"""Every GPU of a node: one notebook per device slot. The GPU-marked tests run only where CUDA is (make gpu-check)."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import in_memory_data, make_mnist, tiny_config

CUDA = torch.cuda.is_available()
TINY = """dataset: mnist
model: lenet_300_100
init: kaiming_fan_in
width: 0.25
epochs: 2
batch_size: 16
lr: 0.02
final_sparsity: 0.5
download: false
threads: 1
"""


# A notebook that only records the devices its kernel was given: the slots are the runner's business, and a
# kernel that imports torch and trains would only make the test slower.
SLOT_NOTEBOOK = """# %% tags=["parameters"]
experiment = "dynamic_pruning/x"
profile = "quick"
overrides = {}
run_dir = None

# %%
import json, os, time
from pathlib import Path
time.sleep(1.0)
Path(run_dir).mkdir(parents=True, exist_ok=True)
(Path(run_dir) / "devices.json").write_text(json.dumps({k: os.environ.get(k) for k in
    ("DYNPRUNE_DEVICE_SLOT", "CUDA_VISIBLE_DEVICES")}))
"""


@pytest.mark.e2e
def test_with_two_device_slots_two_notebooks_render_at_once_and_a_third_waits(tmp_path):
    root = tmp_path / "project"
    (root / "params" / "dynamic_pruning").mkdir(parents=True)
    (root / "params" / "profiles").mkdir()
    (root / "params" / "profiles" / "paper.yaml").write_text("")
    for name in "abc":
        (root / "params" / "dynamic_pruning" / f"{name}.yaml").write_text(TINY)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "dynamic_pruning.py").write_text(SLOT_NOTEBOOK)
    env = os.environ | {"DYNPRUNE_NOTEBOOKS": str(tmp_path / "notebooks"), "DYNPRUNE_DEVICE_SLOTS": "2",
                        "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "dynprune", "notebook",
                               str(root / "results" / "paper" / "dynamic_pruning" / f"{name}.ipynb")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in "abc"]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
    spans = {}
    for name in "abc":
        log = (root / "results/paper/logs/dynamic_pruning" / f"{name}.log").read_text()
        slot, start = re.search(r"device slot\(s\) (\S+) held from ([\d.]+)", log).groups()
        end = re.search(r"device slot\(s\) \S+ released at ([\d.]+)", log).group(1)
        spans[name] = (slot, float(start), float(end))
        seen = json.loads((root / "results/paper/dynamic_pruning" / name / "devices.json").read_text())
        assert seen == {"DYNPRUNE_DEVICE_SLOT": slot, "CUDA_VISIBLE_DEVICES": slot}  # the kernel sees its slot only
    assert {s for s, _, _ in spans.values()} == {"0", "1"}
    ordered = sorted(spans.values(), key=lambda s: s[1])
    assert ordered[1][1] < ordered[0][2]            # the first two held their slots at the same time
    assert ordered[2][1] >= min(ordered[0][2], ordered[1][2]) - 0.01  # the third waited for one to free
    for (slot_a, start_a, end_a) in spans.values():  # a slot is never held twice at once
        for (slot_b, start_b, end_b) in spans.values():
            if (slot_a, start_a) != (slot_b, start_b) and slot_a == slot_b:
                assert end_a <= start_b or end_b <= start_a


def test_a_runs_environment_record_names_its_device_slot(monkeypatch):
    from dynprune.runs import run_folder as records
    monkeypatch.setenv("DYNPRUNE_DEVICE_SLOT", "1")
    assert records.environment(torch.device("cpu"))["device_slot"] == "1"


def test_without_device_slots_nothing_changes(monkeypatch):
    from dynprune.pipeline import render as runner
    monkeypatch.delenv("DYNPRUNE_DEVICE_SLOTS", raising=False)
    monkeypatch.setattr(runner.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(OSError("no nvidia-smi")))
    assert runner.device_slots() == []
    monkeypatch.setenv("DYNPRUNE_DEVICE_SLOTS", "0,2")
    assert runner.device_slots() == ["0", "2"]


def test_gpu_check_runs_its_code_on_the_cpu(tmp_path, monkeypatch):
    from dynprune.tools import gpucheck
    monkeypatch.setenv("DYNPRUNE_DATA", str(tmp_path / "nodata"))
    assert gpucheck.main(["--device", "cpu", "--tiny", "--out", str(tmp_path / "gpu-check.json")]) == 0
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["data"] == "random tensors" and report["data_on_device"]
    assert {"fp32", "bf16 autocast", "fp32 channels-last"} <= set(report["epochs"])
    assert all(v["seconds"] > 0 and v["images_per_s"] > 0 for v in report["epochs"].values())


def test_gpu_check_without_a_gpu_says_so(capsys, monkeypatch):
    from dynprune.tools import gpucheck
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpucheck.main(["--out", "/nonexistent/x.json"]) == 2
    assert "no CUDA GPU on this machine" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA GPU here")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_the_gpu_keeps_exact_sparsity(precision):
    from dynprune.core.train import train
    run = train(tiny_config(device="cuda", precision=precision, model="conv4", epochs=2, final_sparsity=0.8),
                in_memory_data(channels=3, side=32), log=lambda _: None)
    assert run.device.type == "cuda" and run.masks.zeros() == round(0.8 * run.masks.total)
    state = run.model.state_dict()
    assert all(int((state[n][m == 0] != 0).sum()) == 0 for n, m in zip(run.masks.names, run.masks.masks))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_one_run_across_two_gpus_with_nccl(tmp_path):
    data = make_mnist(tmp_path / "data", n_train=1200)
    env = os.environ | {"DYNPRUNE_DATA": str(data), "DYNPRUNE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "dynprune", "train", "--dataset", "mnist", "--model", "lenet_300_100", "--epochs", "2",
                           "--no-download", "--device", "cuda", "--final-sparsity", "0.5", "--out", str(tmp_path / "o")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "o" / "seed42" / "summary.json").read_text())
    assert summary["pruned_weights"] == round(0.5 * summary["prunable_weights"])
