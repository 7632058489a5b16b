import json
import os
from pathlib import Path

import pytest

from dynprune import cli
from dynprune.config import build
from dynprune.core.train import train


def test_train_command_writes_the_same_run_folder(mnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "mnist", "--model", "lenet_300_100", "--width", "0.25",
                     "--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--final-sparsity", "0.5",
                     "--init", "kaiming_fan_in", "--no-download", "--out", str(out)]) == 0
    run = out / "seed42"  # the notebooks' layout: <experiment folder>/[<grid point>/]seed<k>
    summary = json.loads((run / "summary.json").read_text())
    n = summary["prunable_weights"]
    assert summary["pruned_weights"] == round(0.5 * n) and summary["params"]["epochs"] == 2
    assert {p.name for p in run.iterdir()} >= {"history.csv", "layers.csv", "environment.json", "ticket.safetensors",
                                              "figures", "summary.json", "identity.json", "train.log", "export"}
    assert "trained" in capsys.readouterr().out
    # the same command again reuses the finished run: the CLI shares the notebooks' cache
    assert cli.main(["train", "--dataset", "mnist", "--model", "lenet_300_100", "--width", "0.25",
                     "--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--final-sparsity", "0.5",
                     "--init", "kaiming_fan_in", "--no-download", "--out", str(out)]) == 0
    assert f"reused {run}/" in capsys.readouterr().out


REAL = Path(os.environ.get("DYNPRUNE_DATA", "/nonexistent")) / "MNIST" / "raw"


@pytest.mark.skipif(not REAL.is_dir(), reason="real MNIST not found under $DYNPRUNE_DATA/MNIST/raw")
def test_real_mnist_lenet_learns_at_half_sparsity():
    cfg = build(dict(dataset="mnist", model="lenet_300_100", init="kaiming_fan_in", epochs=2,
                     final_sparsity=0.5, download=False, device="cpu"))
    run = train(cfg, log=lambda _: None)
    assert run.masks.zeros() == 133_100
    assert run.test_accuracy >= 95.0


def test_a_full_disk_while_writing_the_ticket_is_one_line_and_the_rerun_finishes(mnist_root, tmp_path, capsys,
                                                                                  monkeypatch):
    import errno
    from dynprune.runs import run_folder as records
    out = tmp_path / "run"
    args = ["train", "--dataset", "mnist", "--model", "lenet_300_100", "--width", "0.25", "--epochs", "2",
            "--batch-size", "32", "--lr", "0.05", "--final-sparsity", "0.5", "--init", "kaiming_fan_in",
            "--no-download", "--out", str(out)]

    def no_space(*_):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(records, "save_ticket", no_space)
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "free space" in err[0]
    assert not (out / "seed42" / "summary.json").exists()  # nothing half-done looks done
    monkeypatch.undo()
    monkeypatch.setenv("DYNPRUNE_DATA", str(mnist_root))
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    assert cli.main(args) == 0
    assert json.loads((out / "seed42" / "summary.json").read_text())["epochs"] == 2
    assert f"resumed {out / 'seed42'}/" in capsys.readouterr().out  # from the last epoch's checkpoint
    assert (out / "seed42" / "ticket.safetensors").is_file()


@pytest.mark.skipif(not REAL.is_dir(), reason="real MNIST not found under $DYNPRUNE_DATA/MNIST/raw")
def test_the_bare_train_command_trains(tmp_path, capsys, monkeypatch):
    """No initialisation named: `init: auto` gives LeNet-300-100 the fan_in it trains with (fan_out left it at
    31 % after 3 epochs), recorded in the run."""
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    assert cli.main(["train", "--dataset", "mnist", "--model", "lenet_300_100", "--epochs", "3", "--train-subset",
                     "2000", "--threads", "1", "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "seed42" / "summary.json").read_text())
    assert summary["initialisation"] == "kaiming_fan_in" and summary["params"]["init"] == "auto"
    assert summary["test_accuracy"] >= 85 and summary["sparsity"] == pytest.approx(0.8, abs=1e-4)
