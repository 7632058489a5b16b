"""Hostile and careless inputs: parameter files, flags, names and run folders come from other people.

Every case must end with one line on stderr naming the problem, a non-zero exit, no traceback, no file
written anywhere and no summary.json — before anything trains. The generated cases take each field of a
valid parameter file and break it: a value of another type, a value just outside its range, a non-finite
number, a hostile name; plus misspelled keys, duplicate keys, and keys that are not text.
"""
import json
import math
import random
import shutil
from pathlib import Path

import pytest
import yaml

from dynprune import cli
from dynprune.config import FIELDS, Config, hints

from conftest import ONE_EPOCH_TRAIN, PROJECT

VALID = {"dataset": "mnist", "model": "lenet_300_100", "init": "kaiming_fan_in", "epochs": 2, "batch_size": 32,
         "lr": 0.05, "final_sparsity": 0.5, "download": False, "device": "cpu", "width": 0.25}
HOSTILE_NAMES = ["/abs/path", "../../x", "a/b", "..", ".", ".hidden", "x;touch PWNED", "$(id)", "a b", "x\ny", "", "é"]


def _other_type(name: str):
    from dynprune.config import describe_type
    kind = describe_type(name)
    if kind.startswith("list") or kind.startswith("mapping"):
        return "not a collection"
    return {"int": "ten", "float": "0.5x", "bool": "yes", "str": 12, "float or null": "0.5x", "int or null": "ten"}[kind]


def _outside(name: str):
    m = FIELDS[name].metadata
    if m["choices"]:
        return "no-such-choice"
    if m["low"] is not None:
        return m["low"] - 1 if not m["low_open"] else m["low"]
    if m["high"] is not None:
        return m["high"] + 1
    return None


def generated_cases() -> list[tuple[str, dict, str]]:
    cases = []
    for name in FIELDS:
        if name in ("grid", "name"):
            continue
        cases.append((f"type:{name}", VALID | {name: _other_type(name)}, name))
        bad = _outside(name)
        if bad is not None:
            cases.append((f"range:{name}", VALID | {name: bad}, name))
        if hints(Config)[name] in (float,) or "float" in str(hints(Config)[name]) and "tuple" not in str(hints(Config)[name]):
            for value in (math.nan, math.inf, -math.inf):
                cases.append((f"nonfinite:{name}={value}", VALID | {name: value}, name))
    rng = random.Random(0)
    for name in rng.sample(sorted(FIELDS), 12):  # misspellings get a did-you-mean
        typo = name[:-1] + ("x" if name[-1] != "x" else "y")
        cases.append((f"typo:{typo}", VALID | {typo: 1}, "unknown parameter"))
    for bad in HOSTILE_NAMES:
        cases.append((f"name:{bad!r}", VALID | {"name": bad}, "name"))
        cases.append((f"ticket_from:{bad!r}", VALID | {"method": "ticket_check", "ticket_from": bad}, "ticket"))
    cases += [
        ("grid:nan", VALID | {"grid": {"lr": [0.1, math.nan]}}, "lr"),
        ("grid:not-a-list", VALID | {"grid": {"lr": 0.1}}, "grid"),
        ("grid:name", VALID | {"grid": {"name": ["a", "b"]}}, "grid"),
        ("grid:duplicate", VALID | {"grid": {"lr": [0.1, 0.1]}}, "twice"),
        ("seed:huge", VALID | {"seed": 10**23}, "seed"),
        ("seeds:duplicate", VALID | {"seeds": [1, 1]}, "seeds"),
        ("multistep:no-milestones", VALID | {"lr_schedule": "multistep"}, "lr_milestones"),
        ("ticket:no-source", VALID | {"method": "ticket_check"}, "ticket_from"),
        ("imp:in-train", VALID | {"method": "imp"}, "notebook"),
        ("prune_end:beyond", VALID | {"prune_end_epoch": 9}, "prune_end_epoch"),
    ]
    return cases


CASES = generated_cases()


def _run(capsys, argv) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own exits
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _check_refused(code, out, err, tmp_path, before):
    assert code not in (0, None), out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dynprune: error: "), err
    assert "Traceback" not in out + err
    assert sorted(p for p in tmp_path.rglob("*")) == before, "a refused input wrote files"
    assert not list(tmp_path.rglob("summary.json"))


@pytest.mark.parametrize("case,values,mentions", CASES, ids=[c[0] for c in CASES])
def test_a_broken_parameter_file_is_refused_in_one_line_before_anything_runs(case, values, mentions, tmp_path, capsys):
    path = tmp_path / "params" / "dynamic_pruning" / "x.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(values) if "nonfinite" not in case else
                    "\n".join(f"{k}: {json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else {math.inf: '.inf', -math.inf: '-.inf'}.get(v, '.nan')}"
                              for k, v in values.items()) + "\n")
    (tmp_path / "params" / "profiles").mkdir()
    (tmp_path / "params" / "profiles" / "paper.yaml").write_text("")
    before = sorted(p for p in tmp_path.rglob("*"))
    code, out, err = _run(capsys, ["train", "--params", str(path), "--out", str(tmp_path / "out")])
    _check_refused(code, out, err, tmp_path, before)
    assert mentions in err


FLAG_CASES = [
    (["--final-sparsty", "0.9"], "did you mean --final-sparsity"),
    (["--grid", "{final_sparsity: [0.5"], "not valid YAML"),
    (["--grid", "[0.5, 0.9]"], "parameter 'grid' must map"),
    (["--seed", "1e23"], "invalid int value"),
    (["--final-sparsity", "nan"], "is nan"),
    (["--lr=-inf"], "is -inf"),
    (["--name", "../../x"], "is not a plain name"),
    (["--name", "/abs/path"], "is not a plain name"),
    (["--device", "cuda"], "no CUDA device"),
    (["--dataset", "imagenet"], "invalid choice"),
    (["--params", str(PROJECT / "params/compare/lenet_mnist_s80.yaml")], "render it with make"),
    (["--params", str(PROJECT / "params/lottery/lenet_mnist_imp_s80_rewind0.yaml")], "render it with make"),
    (["--params", str(PROJECT / "params/ticket/lenet_mnist_s80.yaml")], "render it with make"),
    (["--params", "/no/such/file.yaml"], "does not exist"),
    (["--profile", "../../etc"], "is not a plain name"),
    (["--profile", "nosuch"], "profile 'nosuch' has no file"),
]


@pytest.mark.parametrize("flags,message", FLAG_CASES, ids=[" ".join(f[:2])[:40] for f, _ in FLAG_CASES])
def test_bad_flags_are_refused_in_one_line(flags, message, tmp_path, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = sorted(p for p in tmp_path.rglob("*"))
    base = ["train", "--dataset", "mnist", "--model", "lenet_300_100", "--epochs", "1", "--out", str(tmp_path / "out"),
            "--data-root", str(tmp_path / "nodata"), "--no-download"]
    code, out, err = _run(capsys, base + flags)
    _check_refused(code, out, err, tmp_path, before)
    assert message in err


@pytest.mark.parametrize("command", ["train", "config", "notebook", "experiments", "status", "export", "results"])
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0 and "usage: python -m dynprune " + command in capsys.readouterr().out


@pytest.mark.parametrize("target", ["/tmp/x.ipynb", "results/paper/../../x.ipynb", "results/paper/nosuch/x.ipynb",
                                    "results/paper/dynamic_pruning/x;y.ipynb", "results/../dynamic_pruning/x.ipynb"])
def test_notebook_targets_outside_the_layout_are_refused(target, capsys):
    code, out, err = _run(capsys, ["notebook", target])
    assert code not in (0, None) and "Traceback" not in out + err
    assert len((out + err).strip().splitlines()) <= 2 and ("FAILED" in out or "error" in err)


def test_a_crafted_ticket_file_is_refused_without_running_code(tmp_path):
    """A ticket.safetensors from someone else's run folder is data only; a pickle renamed to it is refused."""
    import pickle
    from dynprune.foundations import storage as store
    from dynprune.runs.run_folder import load_ticket

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "PWNED",))

    path = tmp_path / "ticket.safetensors"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(store.StoreError, match="cannot be read as a dynprune file"):
        load_ticket(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_run_folder_that_links_outside_its_results_is_refused(tmp_path):
    from dynprune.config import ConfigError
    from dynprune.foundations.storage import LinkError
    from dynprune.runs.lifecycle import inside
    (tmp_path / "results").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "results" / "seed42").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LinkError, match="seed42 is a symbolic link"):
        inside(tmp_path / "results" / "seed42", tmp_path / "results")
    with pytest.raises(ConfigError, match="lies outside"):
        inside(tmp_path / "results" / ".." / "elsewhere", tmp_path / "results")


def test_two_trainings_into_one_folder_leave_one_intact_result_and_one_clear_line(tmp_path):
    import subprocess
    import sys
    import time
    from conftest import make_mnist
    data = make_mnist(tmp_path / "data", n_train=2000)
    env = dict(__import__("os").environ, DYNPRUNE_DATA=str(data), DYNPRUNE_CACHE=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "dynprune", "train", "--dataset", "mnist", "--model", "lenet_300_100", "--init",
            "kaiming_fan_in", "--batch-size", "16", "--no-download", "--out", str(tmp_path / "out")]
    first = subprocess.Popen(base + ["--epochs", "20", "--lr", "0.02"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "out" / "seed42" / ".lock"
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.is_file() and lock.read_text()):
        time.sleep(0.05)
    second = subprocess.run(base + ["--epochs", "2", "--lr", "0.01"], env=env, capture_output=True, text=True,
                            timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2 and second.stderr.count("\n") == 1 and "is in use by process" in second.stderr
    summary = json.loads((tmp_path / "out" / "seed42" / "summary.json").read_text())
    assert summary["params"]["epochs"] == 20 and summary["params"]["lr"] == 0.02  # the first one's, intact
    assert not (tmp_path / "out" / "seed42" / "stale").exists()


# -- issue 25: hostile inputs, second round ------------------------------------------------------------------------
# One trained run folder (a second or two), copied for every case; each case plants something and checks that
# the command ends in one line, writes nothing through the link and leaves the finished result alone.

TRAIN = ONE_EPOCH_TRAIN


@pytest.fixture
def run_copy(finished_run, tmp_path, capsys):
    root, template = finished_run
    out = tmp_path / "out"
    shutil.copytree(template, out, symlinks=True)
    capsys.readouterr()
    return TRAIN + ["--data-root", str(root), "--out", str(out)], out


def _victim(tmp_path) -> Path:
    victim = tmp_path / "victim" / "notes.txt"
    victim.parent.mkdir()
    victim.write_text("my notes\n")
    return victim


def _plant(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


LINKED_RUN_FILES = [  # (case, file planted as a link, change that makes the command write, expected exit)
    ("lock-reuse", ".lock", [], 0),                        # reuse reads only: the link is never opened
    ("lock-retrain", ".lock", ["--lr", "0.2"], 2),         # training takes the lock: refused, naming the link
    ("train.log-resume", "train.log", ["unfinished"], 2),  # an unfinished run appends to its train.log
    ("identity.json-retrain", "identity.json", ["--lr", "0.2"], None),
]


@pytest.mark.parametrize("case,name,change,code", LINKED_RUN_FILES, ids=[c[0] for c in LINKED_RUN_FILES])
def test_a_link_planted_in_a_run_folder_is_never_written_through(case, name, change, code, run_copy, tmp_path, capsys):
    argv, out = run_copy
    victim = _victim(tmp_path)
    _plant(out / "seed42" / name, victim)
    if change == ["unfinished"]:
        (out / "seed42" / "summary.json").unlink()
        change = []
    got, stdout, err = _run(capsys, argv + change)
    assert "Traceback" not in stdout + err
    assert victim.read_text() == "my notes\n" and victim.parent.stat().st_nlink == 2 and len(list(victim.parent.iterdir())) == 1
    if code == 2:
        assert got == 2 and err.count("\n") == 1 and "is a symbolic link" in err and name in err, err
        assert json.loads((out / "seed42" / "summary.json").read_text() if (out / "seed42" / "summary.json").exists()
                          else '{"params": {"lr": 0.1}}')["params"]["lr"] == 0.1
    elif code == 0:
        assert got == 0 and "reused" in stdout
    else:  # moved aside with the rest (the link itself, not its target), then trained afresh
        assert got in (0, 2)


@pytest.mark.parametrize("where", ["experiment", "seed42"])
def test_a_linked_experiment_or_run_folder_is_refused_and_nothing_is_trained_into_its_target(where, run_copy, tmp_path,
                                                                                            capsys):
    argv, out = run_copy
    outside = tmp_path / "outside"
    outside.mkdir()
    if where == "experiment":
        shutil.rmtree(out)
        out.symlink_to(outside)
    else:
        _plant(out / "seed42", outside)
    code, stdout, err = _run(capsys, argv + ["--lr", "0.2"])
    assert code == 2 and err.count("\n") == 1 and "is a symbolic link" in err and "Traceback" not in stdout + err
    assert list(outside.iterdir()) == []


def _project(tmp_path: Path, name: str = "x", text: str = "model: lenet_300_100\ndataset: mnist\n") -> Path:
    """A project of one dynamic-pruning parameter file and the quick profile, for the notebook command."""
    (tmp_path / "params" / "dynamic_pruning").mkdir(parents=True)
    (tmp_path / "params" / "profiles").mkdir()
    (tmp_path / "params" / "profiles" / "quick.yaml").write_text("")
    (tmp_path / "params" / "dynamic_pruning" / f"{name}.yaml").write_text(text)
    (tmp_path / "results" / "quick" / "dynamic_pruning").mkdir(parents=True)
    return tmp_path / "results" / "quick" / "dynamic_pruning" / f"{name}.ipynb"


RENDER_LINKS = ["lock", "events", "log", "runs", "html", "running"]


@pytest.mark.parametrize("which", RENDER_LINKS)
def test_a_render_refuses_a_link_where_it_writes(which, tmp_path, capsys):
    from dynprune.pipeline.render import parse_target
    target = _project(tmp_path / "project")
    victim = _victim(tmp_path)
    _, rendered = parse_target(target)
    _plant(getattr(rendered, which), victim)
    code, out, err = _run(capsys, ["notebook", str(target)])
    assert code == 1 and "Traceback" not in out + err
    [failed] = [line for line in out.splitlines() if "FAILED" in line]
    assert "is a symbolic link" in failed and getattr(rendered, which).name in failed
    assert victim.read_text() == "my notes\n"


PARAMETERS_CELL_CODE = [
    '__import__("os").system("touch {pwned}")',
    'experiment = __import__("os").system("touch {pwned}")',
    'import os; os.system("touch {pwned}")',
    'x = open("{pwned}", "w")',
    'profile: str = "quick"',
    'a = b = 1',
    'experiment = "x" if open("{pwned}", "w") else "y"',
    'def f(): pass',
]


@pytest.mark.parametrize("code_line", PARAMETERS_CELL_CODE)
def test_a_parameters_cell_with_code_is_refused_naming_file_and_line_and_runs_nothing(code_line, tmp_path, capsys,
                                                                                      monkeypatch):
    target = _project(tmp_path / "project")
    notebooks = tmp_path / "notebooks"
    shutil.copytree(PROJECT / "notebooks", notebooks)
    pwned = tmp_path / "PWNED"
    source = notebooks / "dynamic_pruning.py"
    text = source.read_text()
    cell = '# %% tags=["parameters"]\n'
    source.write_text(text.replace(cell, cell + code_line.format(pwned=pwned) + "\n", 1))
    monkeypatch.setenv("DYNPRUNE_NOTEBOOKS", str(notebooks))
    code, out, err = _run(capsys, ["notebook", str(target)])
    assert code == 1 and "Traceback" not in out + err
    [failed] = [line for line in out.splitlines() if "FAILED" in line]
    assert "dynamic_pruning.py" in failed and "line 1 of the parameters cell" in failed
    assert not pwned.exists() and not target.exists()


def _laughs(depth: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, depth)]
    return "\n".join(lines)


@pytest.mark.parametrize("where", ["description: *a8", "prune_exclude: *a8", "grid: {lr: *a8}"])
def test_a_billion_laughs_file_is_refused_in_one_line_at_once(where, tmp_path, capsys):
    import time
    # nine nested aliases, defined in a list under one key, then used under the parameter
    text = "anchors:\n" + "\n".join("  - " + line.split(": ", 1)[1] for line in _laughs().splitlines()) + "\n"
    path = tmp_path / "dynamic_pruning" / "laughs.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text + where + "\n")
    started = time.time()
    code, out, err = _run(capsys, ["config", str(path)])
    assert time.time() - started < 5
    assert code == 2 and err.count("\n") == 1 and "more than 10000 values" in err and "Traceback" not in out + err
    assert not out


def test_a_billion_laughs_grid_flag_is_refused_at_once(capsys):
    import time
    laughs = "[" + ", ".join(['"lol"'] * 10) + "]"
    text = "{a0: &a0 " + laughs
    for i in range(1, 9):
        text += f", a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]"
    text += ", lr: *a8}"
    started = time.time()
    code, out, err = _run(capsys, ["config", "--grid", text])
    assert time.time() - started < 5
    assert code == 2 and err.count("\n") == 1 and "more than 10000 values" in err and "Traceback" not in out + err


@pytest.mark.parametrize("name", ["x=1", "a%b", "a b", "-x", "x y=2"])
def test_a_parameter_file_name_that_would_be_make_syntax_is_refused_and_named_with_its_suffix(name, tmp_path, capsys):
    from dynprune.pipeline.schedule import graph
    root = tmp_path / "project"
    _project(root, "ok")
    path = root / "params" / "dynamic_pruning" / f"{name}.yaml"
    path.write_text("model: lenet_300_100\n")
    code, out, err = _run(capsys, ["config", str(path)])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in out + err and "name" in err
    nodes, refused = graph(root, "quick")
    assert list(nodes) == ["dynamic_pruning/ok"]  # the good file is scheduled; the bad one fails alone
    [line] = refused
    assert f"{name}.yaml" in line and "rename the file" in line
