"""Runs that survive faults: kill -9 and resume, refused checkpoints, a full disk, divergence, bad data."""
import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from dynprune.core import checkpoint as checkpoint_module
from dynprune.core import train as train_module
from dynprune.core.checkpoint import TrainingError
from dynprune.config import ConfigError, runs_of
from dynprune.core.data import DataError, load_data
from dynprune.core.train import train

from conftest import in_memory_data, make_mnist, tiny_config

COMMAND = [sys.executable, "-m", "dynprune", "train", "--dataset", "mnist", "--model", "lenet_300_100", "--init",
           "kaiming_fan_in", "--epochs", "4", "--batch-size", "16", "--lr", "0.05", "--final-sparsity", "0.9",
           "--val-fraction", "0.1", "--no-download", "--device", "cpu", "--rotation", "10", "--threads", "1"]


def _history_without_times(path):
    rows = (path / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    keep = [i for i, c in enumerate(header) if c != "seconds"]
    return [[r.split(",")[i] for i in keep] for r in rows]


def test_a_run_killed_mid_epoch_resumes_to_exactly_the_uninterrupted_result(tmp_path, monkeypatch):
    from dynprune.cli import main
    monkeypatch.setenv("DYNPRUNE_DATA", str(make_mnist(tmp_path / "data", n_train=4000, n_test=200)))
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # for the killed and the resumed run, processes of their own
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(COMMAND[3:] + ["--out", str(whole)]) == 0  # the uninterrupted run, in this process

    proc = subprocess.Popen(COMMAND + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    checkpoint = killed / "seed42" / "checkpoint.pt"  # the run folders: <out>/seed<k>, as the notebooks write
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the second epoch's checkpoint, then kill in the third epoch
        try:
            if checkpoint.is_file() and len(torch.load(checkpoint, weights_only=True)["history"]) >= 2:
                break
        except Exception:  # caught mid-rename
            pass
        time.sleep(0.05)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.is_file() and not (killed / "summary.json").exists()

    resumed = subprocess.run(COMMAND + ["--out", str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole, killed = whole / "seed42", killed / "seed42"
    assert "resuming from" in (killed / "train.log").read_text()
    assert _history_without_times(killed) == _history_without_times(whole)
    from dynprune.runs.run_folder import load_ticket
    a, b = load_ticket(whole / "ticket.safetensors"), load_ticket(killed / "ticket.safetensors")
    assert all(torch.equal(a["masks"][n], b["masks"][n]) for n in a["masks"])
    assert all(torch.equal(a["state_dict"][n], b["state_dict"][n]) for n in a["state_dict"])
    import json
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (whole, killed))
    assert sa["test_accuracy"] == sb["test_accuracy"] and sa["sparsity"] == sb["sparsity"]
    assert not checkpoint.exists(), "a finished run leaves no checkpoint behind"


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    from dynprune.runs.identity import identity, key
    data, path = in_memory_data(), tmp_path / "checkpoint.pt"
    cfg = tiny_config(epochs=2)
    train(cfg, data, log=lambda _: None, checkpoint=path, identity_key=key(identity(cfg)))
    with pytest.raises(ConfigError) as e:
        train(cfg.replace(lr=0.01), data, log=lambda _: None, checkpoint=path,
              identity_key=key(identity(cfg.replace(lr=0.01))))
    assert "belongs to another run" in str(e.value) and "\n" not in str(e.value)
    path.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot be read"):
        train(cfg, data, log=lambda _: None, checkpoint=path, identity_key=key(identity(cfg)))


def test_a_checkpoint_of_another_torch_version_is_refused(tmp_path, monkeypatch):
    data, path = in_memory_data(), tmp_path / "checkpoint.pt"
    train(tiny_config(epochs=2), data, log=lambda _: None, checkpoint=path)
    monkeypatch.setattr(torch, "__version__", "99.0")
    with pytest.raises(ConfigError, match="was written by torch .* delete it"):
        train(tiny_config(epochs=2), data, log=lambda _: None, checkpoint=path)


class Payload:
    """Pickled, it would run code on load: what a crafted checkpoint.pt from someone else could hold."""
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "checkpoint.pt"
    torch.save({"identity": None, "history": Payload()}, path)
    with pytest.raises(ConfigError, match="cannot be read"):
        train(tiny_config(epochs=1), in_memory_data(), log=lambda _: None, checkpoint=path)
    assert not (tmp_path / "PWNED").exists()


def test_no_pickle_is_ever_loaded_from_disk():
    """Every torch.load in the sources and the tests reads tensors and plain containers only."""
    import re
    from conftest import PROJECT
    for path in [p for folder in ("dynprune", "notebooks", "tests") for p in (PROJECT / folder).rglob("*.py")]:
        text = path.read_text()
        assert not re.search(r"weights_only\s*=\s*False", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path.name}: {call}"


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    data, path = in_memory_data(), tmp_path / "checkpoint.pt"
    cfg = tiny_config(epochs=3)
    saves = []
    real_save = checkpoint_module.save

    def save_then_fill_the_disk(*args):
        if saves:
            def no_space(fd):
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(os, "fsync", no_space)
        saves.append(path.read_bytes() if path.exists() else None)
        real_save(*args)

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_fill_the_disk)
    with pytest.raises(TrainingError) as e:
        train(cfg, data, log=lambda _: None, checkpoint=path)
    assert "No space left on device" in str(e.value) and "previous checkpoint is intact" in str(e.value)
    assert path.read_bytes() == saves[1], "the epoch-1 checkpoint must survive the failed write"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_divergence_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    data, path = in_memory_data(), tmp_path / "checkpoint.pt"
    real_epoch = train_module.train_epoch

    def poison_third_epoch(model, batches, epoch, *args, **kwargs):
        if epoch == 2:
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if n.endswith("bias")).fill_(float("nan"))
        return real_epoch(model, batches, epoch, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_epoch", poison_third_epoch)
    with pytest.raises(TrainingError) as e:
        train(tiny_config(epochs=5), data, log=lambda _: None, checkpoint=path)
    assert "the loss became nan in epoch 3, step 1" in str(e.value)
    assert len(torch.load(path, weights_only=True)["history"]) == 2


def test_an_exploding_loss_stops_in_one_line_naming_the_learning_rate_and_keeps_the_last_good_checkpoint(
        mnist_root, tmp_path):
    """--lr 100 drives LeNet's loss to 1e26: the run stops after the first epoch whose loss rose over 100 times
    its first value, says what to change, exits 2, and keeps its checkpoint (of the epoch before, if any)."""
    proc = subprocess.run([sys.executable, "-m", "dynprune", "train", "--dataset", "mnist", "--model", "lenet_300_100",
                           "--epochs", "3", "--lr", "100", "--no-download", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "over 100 times its first value" in line or "the loss became" in line, line
    assert "lr 100" in line and "initialisation (kaiming_fan_in)" in line and "checkpoint" in line
    assert not (tmp_path / "out" / "seed42" / "summary.json").exists()


def test_corrupt_idx_files_are_one_line(tmp_path, monkeypatch):
    """A data file whose checksum torchvision does not know (a copy of one's own) with a broken header."""
    root = make_mnist(tmp_path / "data")
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(b"\x07\x07" + path.read_bytes()[2:])  # the magic number's first bytes must be 0
    with pytest.raises(DataError) as e:
        load_data(tiny_config(data_root=str(root)))
    assert "cannot read mnist" in str(e.value) and "\n" not in str(e.value)


def test_prune_exclude_leaving_nothing_is_refused_before_any_data_is_read(tmp_path, capsys):
    from dynprune import cli
    assert cli.main(["train", "--dataset", "mnist", "--model", "lenet_300_100", "--prune-exclude", "*",
                     "--data-root", str(tmp_path / "no-data"), "--no-download", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "prune_exclude" in err and "leaves no Conv2d/Linear weight" in err
    assert not (tmp_path / "out").exists()


def test_corrupt_torchvision_files_are_named(tmp_path, monkeypatch):
    root = make_mnist(tmp_path / "data")
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"not the real file")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz does not match torchvision's checksum"):
        load_data(tiny_config(data_root=str(root)))
    (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").unlink()
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DataError, match="missing, truncated or corrupt"):
        load_data(tiny_config(data_root=str(root)))


def test_tree_with_no_classes_or_an_empty_class(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    for split in ("train", "test"):
        (tmp_path / "cifar10" / split).mkdir(parents=True)
    with pytest.raises(DataError, match="has no class folders"):
        load_data(tiny_config(dataset="cifar10", data_root=str(tmp_path)))
    for split in ("train", "test"):
        (tmp_path / "cifar10" / split / "cat").mkdir()
    with pytest.raises(DataError, match="has no images"):
        load_data(tiny_config(dataset="cifar10", data_root=str(tmp_path)))


def test_train_and_test_images_of_different_sizes_are_refused_before_training(tmp_path, monkeypatch):
    from conftest import make_tree
    root = make_tree(tmp_path / "data", side=32)
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    from PIL import Image
    for f in (root / "cifar10" / "test").rglob("*.png"):
        Image.open(f).resize((28, 28)).save(f)
    with pytest.raises(DataError, match="training images are .* but test images"):
        load_data(tiny_config(dataset="cifar10", data_root=str(root)))


def test_labels_outside_the_classes_are_refused(tmp_path, monkeypatch):
    from conftest import write_idx
    root = make_mnist(tmp_path / "data")
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    labels = torch.arange(600) % 10
    labels[7] = 42  # same size, one corrupted label
    write_idx(root / "MNIST" / "raw" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match="labels run from 0 to 42 but there are 10 classes"):
        load_data(tiny_config(data_root=str(root)))


def test_a_finished_run_is_judged_by_parameters_and_code_where_its_data_is_not_on_this_machine(mnist_root, tmp_path,
                                                                                               monkeypatch):
    from dynprune.foundations.text_files import json_text
    from dynprune.runs import identity, lifecycle, state
    from dynprune.runs.paths import RunFolder
    ident = state.run_identity(tiny_config())
    assert ident["inputs"]["data"] != "missing"
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "identity.json").write_text(json_text(dict(key=identity.key(ident), identity=ident)))
    (folder / "summary.json").write_text(json_text(dict(identity=identity.key(ident))))
    assert state.status(RunFolder(folder), ident) == "done"
    monkeypatch.setenv("DYNPRUNE_DATA", str(tmp_path / "nothing-here"))  # a colleague's folders, no data here
    assert state.status(RunFolder(folder), state.run_identity(tiny_config())) == "done"
    assert state.status(RunFolder(folder), state.run_identity(tiny_config(lr=0.03))) == "stale"
    # a notebook rendered here reads the run; one that would need to train stops in one line, moving nothing
    [run] = runs_of(tiny_config())
    assert lifecycle.ensure(run, folder, "paper", root=tmp_path, log=lambda _: None).action == "reused"
    [other] = runs_of(tiny_config(lr=0.03))
    with pytest.raises(DataError, match="nothing-here"):
        lifecycle.ensure(other, folder, "paper", root=tmp_path, log=lambda _: None)
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "identity.json", "summary.json"]
    monkeypatch.setenv("DYNPRUNE_DATA", str(make_mnist(tmp_path / "other", n_train=500)))  # other data: stale
    assert state.status(RunFolder(folder), state.run_identity(tiny_config())) == "stale"


def test_run_records_are_strict_json_even_for_a_non_finite_metric():
    import json
    from dynprune.foundations.text_files import json_text

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    text = json_text({"val_loss": float("nan"), "history": [1.0, float("inf"), {"x": float("-inf")}], "ok": 2.5})
    assert json.loads(text, parse_constant=refuse) == {"val_loss": None, "history": [1.0, None, {"x": None}], "ok": 2.5}


# -- issue 25, items 5-7: one line, a non-zero exit where it is an error, nothing written or moved -------------------

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from test_security import TRAIN, _project, _run, run_copy  # noqa: E402,F401  (run_copy is a fixture, shared)


def _one_line(code, out, err, *mentions, exit_code=2):
    assert code == exit_code and "Traceback" not in out + err, out + err
    assert err.count("\n") == 1 and err.startswith("dynprune: error: "), err
    for m in mentions:
        assert m in err, err


def test_a_finished_run_folder_that_cannot_be_written_is_reused(run_copy, capsys, monkeypatch):
    """A colleague's read-only run folder (as root, permissions do not stop a write: every open for writing
    below the folder fails instead)."""
    from dynprune.foundations import storage
    argv, out = run_copy
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(out) in str(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(storage.os, "open", read_only)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, stdout, err = _run(capsys, argv)
    assert code == 0 and "reused" in stdout and not err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.parametrize("out", ["file", "/dev/null", "/proc/self/dynprune", "", ".", "  "])
def test_an_out_that_is_no_folder_to_write_into_is_one_line(out, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("keep\n")
    code, stdout, err = _run(capsys, TRAIN + ["--data-root", str(tmp_path / "none"), "--out", out])
    _one_line(code, stdout, err, "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and (tmp_path / "file").read_text() == "keep\n"


@pytest.mark.parametrize("damage", ["accuracy-string", "accuracy-missing", "not-json", "truncated", "a-list",
                                    "identity-number"])
def test_a_damaged_summary_is_one_line_or_a_fresh_run_never_a_traceback(damage, run_copy, capsys):
    argv, out = run_copy
    summary = out / "seed42" / "summary.json"
    data = json.loads(summary.read_text())
    text = {"accuracy-string": lambda: json.dumps(data | {"test_accuracy": "99.1"}),
            "accuracy-missing": lambda: json.dumps({k: v for k, v in data.items() if k != "test_accuracy"}),
            "not-json": lambda: "not json at all",
            "truncated": lambda: summary.read_text()[:40],
            "a-list": lambda: "[1, 2]",
            "identity-number": lambda: json.dumps(data | {"identity": 7})}[damage]()
    summary.write_text(text)
    code, stdout, err = _run(capsys, argv)
    assert "Traceback" not in stdout + err
    if code == 0:  # unreadable, so not finished: trained again in its place
        assert "trained" in stdout and json.loads(summary.read_text())["test_accuracy"] >= 0
    else:
        _one_line(code, stdout, err, "summary.json")
        assert summary.read_text() == text


def _params(tmp_path, kind: str, name: str, text: str) -> Path:
    path = tmp_path / "params" / kind / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "params" / "profiles").mkdir(exist_ok=True)
    (tmp_path / "params" / "profiles" / "paper.yaml").write_text("")
    path.write_text(text)
    return path


@pytest.mark.parametrize("kind,text,mention", [
    ("compare", "inputs: [compare/c]\n", "inputs"),
    ("compare", "inputs: [report/all]\n", "inputs"),
    ("ticket", "ticket_from: ticket/c\nmodel: lenet_300_100\ndataset: mnist\n", "ticket_from"),
    ("ticket", "ticket_from: lottery/x\nmodel: lenet_300_100\ndataset: mnist\n", "ticket_from"),
])
def test_an_input_that_names_itself_or_the_wrong_kind_is_one_line(kind, text, mention, tmp_path, capsys):
    path = _params(tmp_path, kind, "c", text)
    _one_line(*_run(capsys, ["config", str(path)]), mention)


@pytest.mark.parametrize("profile", ["nonexist", "../etc", "a b", "-x"])
def test_status_of_a_profile_that_is_not_one_is_one_line(profile, capsys, monkeypatch):
    from conftest import PROJECT
    monkeypatch.chdir(PROJECT)
    code, out, err = _run(capsys, ["status", "--profile", profile])
    _one_line(code, out, err, "profile")
    assert not out


FLAG_MISTAKES = [  # (argv, what the line says)
    (["train", "--epoch", "2"], "unknown flag --epoch (did you mean --epochs?)"),
    (["config", "--final-spars", "0.5"], "unknown flag --final-spars"),
    (["experiments", "--job", "2"], "unknown flag --job"),
    (["config", "--grid", "{lr: [0.1], lr: [0.2]}"], "duplicate key"),
    (["experiments", "--jobs", "0"], "not a count of notebooks"),
    (["experiments", "--jobs", "-3"], "not a count of notebooks"),
    (["experiments", "--jobs", "two"], "--jobs"),
    (["config", "--compile", "--no-compile"], "both given"),
    (["config", "--download", "--no-download"], "both given"),
    (["config", "--no-compile", "--compile"], "both given"),
]


@pytest.mark.parametrize("argv,message", FLAG_MISTAKES, ids=[" ".join(a) for a, _ in FLAG_MISTAKES])
def test_a_flag_mistake_is_one_line(argv, message, capsys):
    _one_line(*_run(capsys, argv), message)


def test_a_subset_larger_than_the_data_is_one_line(run_copy, capsys):
    argv, out = run_copy
    _one_line(*_run(capsys, argv + ["--train-subset", "99999999"]), "train_subset")
    assert not (out / "seed42" / "stale").exists()


def test_config_into_a_closed_pipe_ends_quietly():
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-m", "dynprune", "config", "--epochs", "3"], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=60, env=os.environ | {"OMP_NUM_THREADS": "1"})
    os.close(write)
    assert proc.returncode == 0 and proc.stderr == ""


def test_params_naming_a_folder_says_it_is_a_folder(tmp_path, capsys):
    _one_line(*_run(capsys, ["config", str(tmp_path)]), "is a folder")
    _one_line(*_run(capsys, ["train", "--params", str(tmp_path)]), "is a folder")


def test_an_offline_download_is_one_reason_and_leaves_no_empty_folders(tmp_path, capsys, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    argv = [a for a in TRAIN if a != "--no-download"] + ["--download", "--data-root", str(tmp_path / "data"),
                                                        "--out", str(tmp_path / "out")]
    code, out, err = _run(capsys, argv)
    _one_line(code, out, err, "download failed")
    assert err.count("download failed") == 1 and "delete" not in err
    assert list((tmp_path / "data").rglob("*")) == []


def test_an_unknown_key_says_did_you_mean_without_listing_every_parameter(tmp_path, capsys):
    path = _params(tmp_path, "dynamic_pruning", "x", "epochz: 3\n")
    code, out, err = _run(capsys, ["config", str(path)])
    _one_line(code, out, err, "did you mean", "epochs")
    assert len(err) < 400 and "final_sparsity" not in err


@pytest.mark.parametrize("damage", ["layouts-text", "no-layouts", "values"])
def test_a_damaged_ticket_names_its_file(damage, tmp_path):
    from dynprune.foundations import storage
    from dynprune.runs.run_folder import load_ticket
    mask = torch.ones(4, 3, dtype=torch.bool)
    tensors, layout = storage.pack_state({"w": torch.ones(4, 3)}, {"w": mask}, prefix="final.")
    if damage == "values":
        tensors["final.w:values"] = torch.ones(2)
    meta = {} if damage == "no-layouts" else dict(layouts="x" if damage == "layouts-text" else {"final": layout},
                                                  params={}, arch={})
    path = tmp_path / "ticket.safetensors"
    storage.save(path, tensors, meta)
    with pytest.raises(storage.StoreError) as e:
        load_ticket(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("change", [dict(width=0.5), dict(model="conv4")])
def test_a_ticket_of_another_shape_is_refused_naming_its_file_before_training(change, run_copy, tmp_path):
    from dynprune.runs.paths import RunFolder
    from dynprune.runs.training import _check_ticket
    _, out = run_copy
    cfg = tiny_config(method="ticket_check", ticket_from="dynamic_pruning/x", **change)
    data = in_memory_data(side=28) if "model" not in change else in_memory_data(channels=3, side=32)
    with pytest.raises(ConfigError) as e:
        _check_ticket(cfg, data, RunFolder(tmp_path / "ticket"), "paper", {}, {"folder": RunFolder(out / "seed42")},
                      print)
    assert str(out / "seed42" / "ticket.safetensors") in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "ticket").exists()


def test_a_raw_pickle_checkpoint_is_one_line_without_a_torch_warning(tmp_path, recwarn):
    import pickle
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps({"identity": "x", "obj": Payload()}))
    with pytest.raises(ConfigError, match="cannot be read"):
        checkpoint_module.load(path, "x")
    assert not recwarn.list


def _notebook_copy(tmp_path, monkeypatch, replace: tuple[str, str]) -> Path:
    from conftest import PROJECT
    notebooks = tmp_path / "notebooks"
    shutil.copytree(PROJECT / "notebooks", notebooks)
    source = notebooks / "dynamic_pruning.py"
    old, new = replace
    assert old in source.read_text()
    source.write_text(source.read_text().replace(old, new, 1))
    monkeypatch.setenv("DYNPRUNE_NOTEBOOKS", str(notebooks))
    return source


@pytest.mark.parametrize("broken", ["from pathlib import Path\n", "from pathlib import Path\nx = (\n"])
def test_a_syntax_error_in_a_notebook_names_the_notebook_file_and_cell(broken, tmp_path, capsys, monkeypatch):
    target = _project(tmp_path / "project")
    _notebook_copy(tmp_path, monkeypatch, ("from pathlib import Path\n", "from pathlib import Path\nif True\n"
                                           if broken == "from pathlib import Path\n" else broken))
    code, out, err = _run(capsys, ["notebook", str(target)])
    assert code == 1 and "Traceback" not in out + err
    [failed] = [line for line in out.splitlines() if "FAILED" in line]
    assert "dynamic_pruning.py" in failed and "cell" in failed and "syntax" in failed.lower(), failed
    assert not target.exists() and not target.with_suffix(".failed.ipynb").exists()


def test_a_notebook_in_use_says_to_wait_for_it(tmp_path, capsys):
    from dynprune.foundations.storage import locked
    from dynprune.pipeline.render import parse_target
    target = _project(tmp_path / "project")
    _, rendered = parse_target(target)
    with locked(rendered.lock, "notebook"):
        code, out, err = _run(capsys, ["notebook", str(target)])
    assert code == 1 and "Traceback" not in out + err
    [failed] = [line for line in out.splitlines() if "FAILED" in line]
    assert "is in use by process" in failed and "wait for it to finish" in failed and "another folder" not in failed
