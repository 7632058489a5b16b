"""A fuzz of hostile and careless inputs beyond issue 25's list (test_security.py and test_faults.py hold those).

Every case goes through the command line in this process (`dynprune.cli.main`) and must end one of two ways:
accepted (exit 0), or refused with one line `dynprune: error: ...` (or, for `notebook`, one FAILED line) and a
non-zero exit — never a traceback, never a file written outside the folder the case may write into.

Categories: parameter-file encodings, YAML oddities, sizes and non-finite numbers in every numeric field, names,
every flag with bad values, symbolic links and special files, run folders that are damaged or from another
version. With DYNPRUNE_FUZZ_TABLE=<path>, the module writes its table (case, input, outcome) there.
"""
from __future__ import annotations

import json
import os
import shutil
import typing
from pathlib import Path

import pytest

from dynprune import cli
from dynprune.config import FIELDS, Config, hints

from conftest import ONE_EPOCH_TRAIN

ROWS: dict[str, tuple[str, str]] = {}  # case id -> (input, outcome), for the table


@pytest.fixture(scope="module", autouse=True)
def table():
    yield
    path = os.environ.get("DYNPRUNE_FUZZ_TABLE")
    if path:
        lines = ["| case | input | outcome |", "|---|---|---|"]
        for case, (given, outcome) in ROWS.items():
            cell = [s.replace("|", "\\|").replace("\n", " ")[:160] for s in (case, given, outcome)]
            lines.append(f"| {cell[0]} | `{cell[1]}` | {cell[2]} |")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(f"{len(ROWS)} cases\n\n" + "\n".join(lines) + "\n")


def _short(argv: list[str]) -> str:
    return " ".join(repr(a) if (not a or " " in a or "\n" in a) else a for a in argv)[:150]


def _snapshot(folder: Path) -> dict:
    return {p: (p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


def outcome(case: str, given: str, capsys, argv: list[str], notebook: bool = False) -> str:
    """Run argv; the case's outcome ('accepted' or 'refused: <line>'), after checking it is one of the two."""
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own exits
        code = e.code
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "Traceback" not in out + err, out + err
    if code in (0, None):
        result = "accepted"
    elif notebook:
        [line] = [line for line in out.splitlines() if "FAILED" in line]
        result = "refused: " + line.split("FAILED: ", 1)[1]
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dynprune: error: "), err
        result = "refused: " + lines[0].removeprefix("dynprune: error: ")
    ROWS[case] = (given, result)
    return result


# -- parameter files: encodings, YAML oddities, sizes ------------------------------------------------------

def _deep(n: int) -> str:
    return "description: " + "[" * n + "1" + "]" * n + "\n"


FILES: dict[str, bytes] = {
    "latin-1 bytes": "description: caf\xe9\n".encode("latin-1"),
    "utf-8 BOM": b"\xef\xbb\xbfepochs: 3\n",
    "utf-16 BOM": "epochs: 3\n".encode("utf-16"),
    "NUL byte": b"epochs: 3\x00\n",
    "NUL in value": b"description: 'a\x00b'\n",
    "control char": b"description: a\x07b\n",
    "100k-char line": b"description: " + b"x" * 100_000 + b"\n",
    "2 MB file": b"# " + b"x" * (2 << 20) + b"\n",
    "100k-char key": b"k" * 100_000 + b": 1\n",
    "CRLF lines": b"epochs: 3\r\nlr: 0.1\r\n",
    "tab indentation": b"grid:\n\tlr: [0.1]\n",
    "lone surrogate escape": b'description: "\\ud800"\n',
    "empty file": b"",
    "only a comment": b"# nothing\n",
    "only ---": b"---\n",
    "two documents": b"epochs: 3\n---\nepochs: 4\n",
    "top-level list": b"- epochs: 3\n",
    "top-level scalar": b"3\n",
    "top-level string": b"hello\n",
    "null document": b"~\n",
    "python tag": b"epochs: !!python/object/apply:os.system ['touch PWNED']\n",
    "python name tag": b"epochs: !!python/name:os.system\n",
    "custom tag": b"epochs: !mine 3\n",
    "binary tag": b"description: !!binary aGVsbG8=\n",
    "set tag": b"prune_exclude: !!set {a, b}\n",
    "timestamp": b"description: 2024-01-01\n",
    "omap tag": b"grid: !!omap [lr: [0.1]]\n",
    "anchor reused": b"a: &x 3\nepochs: *x\n",
    "merge key": b"base: &b {epochs: 3}\n<<: *b\n",
    "merge into grid": b"grid:\n  <<: {lr: [0.1, 0.2]}\n",
    "undefined alias": b"epochs: *nothere\n",
    "recursive alias": b"description: &a [*a]\n",
    "duplicate key": b"epochs: 3\nepochs: 4\n",
    "duplicate in grid": b"grid: {lr: [0.1], lr: [0.2]}\n",
    "int key": b"1: 2\n",
    "bool key": b"yes: 2\n",
    "null key": b"~: 2\n",
    "list key": b"? [a, b]\n: 1\n",
    "mapping key": b"? {a: 1}\n: 1\n",
    "nesting 30 deep": _deep(30).encode(),
    "nesting 2000 deep": _deep(2000).encode(),
    "10001 values": ("prune_exclude: [" + ", ".join(["a"] * 10_001) + "]\n").encode(),
    "grid 10x10": b"grid: {lr: [0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95], "
                  b"final_sparsity: [0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95]}\n",
    "grid empty list": b"grid: {lr: []}\n",
    "grid of mappings": b"grid: {lr: [{a: 1}]}\n",
    "grid null": b"grid: ~\n",
    "description mapping": b"description: {a: 1}\n",
    "yes as bool": b"download: yes\n",
    "on as string": b"dataset: on\n",
    "octal int": b"epochs: 010\n",
    "hex int": b"epochs: 0x10\n",
    "sexagesimal": b"epochs: 1:30\n",
    "underscore int": b"epochs: 1_0\n",
    "float epochs": b"epochs: 3.0\n",
    "bool epochs": b"epochs: true\n",
    "1.0e+400": b"lr: 1.0e+400\n",
    "1e400 (a string in YAML 1.1)": b"lr: 1e400\n",
    "-1.0e+400": b"lr: -1.0e+400\n",
    "1.0e-400": b"lr: 1.0e-400\n",
    "huge int seed": b"seed: 1" + b"0" * 5000 + b"\n",
    "huge int epochs": b"epochs: 99999999999999999999\n",
    "string with newline name": b'name: "a\\nb"\n',
    "unicode name": "name: \u540d\u524d\n".encode(),
    "rtl override name": "name: a\u202eb\n".encode(),
    "name 128 chars": b"name: " + b"a" * 128 + b"\n",
    "name 129 chars": b"name: " + b"a" * 129 + b"\n",
}


@pytest.mark.parametrize("label", list(FILES))
def test_a_parameter_file(label, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "dynamic_pruning" / "x.yaml"
    path.parent.mkdir()
    path.write_bytes(FILES[label])
    before = _snapshot(tmp_path)
    outcome(f"file: {label}", FILES[label][:60].decode("latin-1"), capsys, ["config", str(path)])
    assert _snapshot(tmp_path) == before and not (tmp_path / "PWNED").exists()


# -- every numeric field: sizes and non-finite values, in a file and as a flag ---------------------------

NUMERIC = [n for n in FIELDS if hints(Config)[n] in (int, float) or typing.get_args(hints(Config)[n])[:1] == (int,)]
FILE_VALUES = {"1.0e+400": "1.0e+400", "-.inf": "-.inf", ".nan": ".nan", "-1": "-1", "10**30": "1" + "0" * 30}
FLAG_VALUES = {"1e400": "1e400", "nan": "nan", "-1": "-1", "empty": "", "10**30": "1" + "0" * 30}


@pytest.mark.parametrize("field,label", [(f, v) for f in NUMERIC for v in FILE_VALUES])
def test_a_numeric_field_in_a_file(field, label, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "dynamic_pruning" / "x.yaml"
    path.parent.mkdir()
    path.write_text(f"{field}: {FILE_VALUES[label]}\n")
    outcome(f"number in file: {field}={label}", path.read_text().strip()[:60], capsys, ["config", str(path)])


@pytest.mark.parametrize("field,label", [(f, v) for f in NUMERIC for v in FLAG_VALUES])
def test_a_numeric_flag(field, label, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["config", "--" + field.replace("_", "-"), FLAG_VALUES[label]]
    outcome(f"number flag: {field}={label}", _short(argv), capsys, argv)
    assert list(tmp_path.iterdir()) == []


# -- every other flag with bad values ----------------------------------------------------------------------

OTHER = [n for n in FIELDS if n not in NUMERIC]
BAD = {"empty": "", "long": "x" * 5000, "traversal": "../../etc/passwd", "dash": "-x", "unicode": "\u00e9\u540d",
       "yaml tag": "!!python/name:os.system"}


@pytest.mark.parametrize("field,label", [(f, v) for f in OTHER for v in ("empty", "long", "traversal")]
                         + [(f, v) for f in ("name", "description", "prune_exclude", "grid", "dataset", "ticket_from")
                            for v in ("dash", "unicode", "yaml tag")])
def test_another_flag(field, label, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flag = "--" + field.replace("_", "-")
    argv = ["config", f"{flag}={BAD[label]}"]  # a boolean flag takes no value: refused too
    outcome(f"flag: {field}={label}", _short(argv)[:80], capsys, argv)
    assert list(tmp_path.iterdir()) == []


COMMAND_FLAGS = [
    ["experiments", "--jobs", "1e3"], ["experiments", "--jobs", ""], ["experiments", "--jobs", "99999999999999999999999x"],
    ["experiments", "--launch", "ssh"], ["notebook", "results/quick/dynamic_pruning/x.ipynb", "--launch", "cloud"],
    ["train", "--profile", ""], ["train", "--profile", "-x"], ["config", "--profile", "a/b"],
    ["config", "--profile", "\u540d"], ["status", "--profile", ""], ["status", "--profile", "x" * 300],
    ["results", "--profile", "../x"], ["export"], ["nosuchcommand"], [], ["--help=x"], ["config", "--grid"],
    ["config", "a.yaml", "b.yaml"], ["config", "--seeds"], ["config", "--seeds", "1", "x"],
    ["config", "--prune-exclude"], ["config", "--lr-milestones", "-1"], ["config", "--lr", "0x10"],
    ["config", "--lr", "1_0"], ["config", "--epochs", "1.5"], ["config", "--epochs", "+3"],
    ["config", "--epochs", " 3 "], ["config", "--epochs", "\u0663"], ["config", "--epochs=3=4"],
    ["config", "--download=1"], ["config", "--no-download=0"], ["config", "-e", "3"], ["config", "--"],
    ["config", "--", "--epochs"], ["config", "--grid", "{lr: !!python/object/apply:os.system [id]}"],
    ["config", "--grid", "{lr: [1.0e+400]}"], ["config", "--grid", "{seed: [1, 2]}"],
    ["config", "--grid", "{grid: [1]}"], ["config", "--grid", "{}"], ["config", "--grid", "{lr: [0.1]}" + " " * 10000],
    ["config", "--grid", "[" * 5000], ["config", "--grid", "{lr: &a [0.1], momentum: *a}"],
    ["train", "--threads", "1" + "0" * 30], ["train", "--threads", str(2 ** 63)], ["config", "--threads", "5000"],
]


@pytest.mark.parametrize("argv", COMMAND_FLAGS, ids=[_short(a)[:50] for a in COMMAND_FLAGS])
def test_a_command_flag(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params" / "profiles").mkdir(parents=True)
    (tmp_path / "params" / "profiles" / "quick.yaml").write_text("")
    before = _snapshot(tmp_path)
    result = outcome(f"command: {_short(argv)[:60]}", _short(argv), capsys, argv)
    assert _snapshot(tmp_path) == before
    assert argv == ["config", "--grid", "{lr: &a [0.1], momentum: *a}"] or not result.startswith("accepted") or \
        argv[0] == "config"


# -- names: of parameter files and experiments --------------------------------------------------------------

FILE_NAMES = ["\u540d\u524d", "caf\u00e9", "-leading", "--epochs=3", ".hidden", "a..b", "..x", "a.b", "x" * 128,
              "x" * 129, "a b", "a\tb", "a%b", "a=b", "a$b", "a;b", "a'b", "a*b", "a?b", "a[b]", "a\\b", "CON", "nul",
              "x.yaml", "_under", "0"]


@pytest.mark.parametrize("name", FILE_NAMES, ids=[repr(n)[:40] for n in FILE_NAMES])
def test_a_parameter_file_name(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "dynamic_pruning"
    folder.mkdir()
    try:
        path = folder / f"{name}.yaml"
        path.write_text("epochs: 3\n")
    except OSError:
        pytest.skip("the file system refuses the name")
    before = _snapshot(tmp_path)
    result = outcome(f"file name: {name!r}"[:60], str(path.relative_to(tmp_path)), capsys, ["config", str(path)])
    import re
    assert result == "accepted" if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", name) else result.startswith("refused")
    assert _snapshot(tmp_path) == before


# -- symbolic links and special files where parameters are read ---------------------------------------------

SPECIAL = ["link to a valid file", "dangling link", "link loop", "link to a folder", "fifo", "/dev/zero", "/dev/null",
           "/proc/self/environ", "folder named x.yaml", "no extension", "a socket-free char device /dev/urandom"]


@pytest.mark.parametrize("kind", SPECIAL)
def test_a_parameter_file_that_is_special(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "dynamic_pruning"
    folder.mkdir()
    real = tmp_path / "real.yaml"
    real.write_text("epochs: 3\n")
    path = folder / "x.yaml"
    if kind == "link to a valid file":
        path.symlink_to(real)
    elif kind == "dangling link":
        path.symlink_to(tmp_path / "gone.yaml")
    elif kind == "link loop":
        path.symlink_to(path)
    elif kind == "link to a folder":
        path.symlink_to(tmp_path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind.startswith(("/dev/", "/proc/")):
        path = Path(kind.split()[0])
    elif kind.startswith("a socket-free"):
        path = Path("/dev/urandom")
    elif kind == "folder named x.yaml":
        path.mkdir()
    elif kind == "no extension":
        path = folder / "x"
        path.write_text("epochs: 3\n")
    before = _snapshot(tmp_path)
    outcome(f"params: {kind}", str(path), capsys, ["config", str(path)])
    assert _snapshot(tmp_path) == before
    outcome(f"params via train: {kind}", str(path), capsys,
            ["train", "--params", str(path), "--no-download", "--data-root", str(tmp_path / "none"), "--out",
             str(tmp_path / "out"), "--device", "cpu", "--model", "lenet_300_100", "--dataset", "mnist"])
    assert not list(tmp_path.rglob("summary.json"))


# -- run folders: damaged, from another version, linked ------------------------------------------------------

TRAIN = ONE_EPOCH_TRAIN


def _json(value) -> bytes:
    return json.dumps(value).encode()


def _summary(data: dict, **changes) -> bytes:
    return _json(data | changes)


DAMAGE = {  # file in seed42 -> its new content (a callable of the old summary), or None to delete it
    "summary empty": ("summary.json", lambda s: b""),
    "summary null": ("summary.json", lambda s: b"null"),
    "summary {}": ("summary.json", lambda s: b"{}"),
    "summary NaN": ("summary.json", lambda s: b"NaN"),
    "summary Infinity accuracy": ("summary.json", lambda s: _summary(s).replace(
        f'"test_accuracy": {json.dumps(s["test_accuracy"])}'.encode(), b'"test_accuracy": Infinity')),
    "summary 100k nested": ("summary.json", lambda s: b"[" * 100_000 + b"]" * 100_000),
    "summary binary": ("summary.json", lambda s: os.urandom(256)),
    "summary utf-16": ("summary.json", lambda s: json.dumps(s).encode("utf-16")),
    "summary huge": ("summary.json", lambda s: _summary(s, description="x" * 5_000_000)),
    "summary accuracy null": ("summary.json", lambda s: _summary(s, test_accuracy=None)),
    "summary accuracy list": ("summary.json", lambda s: _summary(s, test_accuracy=[1])),
    "summary accuracy bool": ("summary.json", lambda s: _summary(s, test_accuracy=True)),
    "summary sparsity string": ("summary.json", lambda s: _summary(s, sparsity="0.8")),
    "summary no sparsity": ("summary.json", lambda s: _json({k: v for k, v in s.items() if k != "sparsity"})),
    "summary params a list": ("summary.json", lambda s: _summary(s, params=[1])),
    "summary of another version": ("summary.json", lambda s: _summary(s, identity="0" * 16, code="old")),
    "identity.json garbage": ("identity.json", lambda s: b"\x00\xff garbage"),
    "identity.json a list": ("identity.json", lambda s: b"[]"),
    "identity.json missing": ("identity.json", None),
    "history.csv garbage": ("history.csv", lambda s: os.urandom(300)),
    "layers.csv missing": ("layers.csv", None),
    "environment.json garbage": ("environment.json", lambda s: b"{"),
    "train.log binary": ("train.log", lambda s: os.urandom(300)),
    "ticket garbage, export kept": ("ticket.safetensors", lambda s: b"garbage"),
    "export/measurement.json garbage": ("export/measurement.json", lambda s: b"not json"),
    "export/model.json a list": ("export/model.json", lambda s: b"[]"),
    "export/model.safetensors garbage": ("export/model.safetensors", lambda s: os.urandom(100)),
    "stray .tmp file": (".summary.json.123.tmp", lambda s: b"half"),
    "stale/ a file": ("stale", lambda s: b"not a folder"),
    "checkpoint.pt garbage beside a summary": ("checkpoint.pt", lambda s: b"garbage"),
}


@pytest.fixture
def brief(monkeypatch):
    """A run trained here saves no figures and measures its export briefly (the inputs are what is tested)."""
    from dynprune.pipeline import experiment
    from dynprune.sparse import measurement
    real = measurement.measure
    monkeypatch.setattr(experiment, "run_figures", None)
    monkeypatch.setattr(measurement, "measure", lambda *a, **k: real(*a, **(k | dict(min_time=0.001, rounds=1))))


@pytest.fixture
def run_folder(finished_run, brief, tmp_path, capsys):
    root, out = finished_run
    shutil.copytree(out, tmp_path / "out", symlinks=True)
    capsys.readouterr()
    return TRAIN + ["--data-root", str(root), "--out", str(tmp_path / "out")], tmp_path / "out" / "seed42"


@pytest.mark.parametrize("label", list(DAMAGE))
def test_a_damaged_run_folder(label, run_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, folder = run_folder
    name, content = DAMAGE[label]
    summary = json.loads((folder / "summary.json").read_text())
    if content is None:
        (folder / name).unlink()
    else:
        (folder / name).write_bytes(content(summary))
    outside = {p for p in tmp_path.iterdir()}
    outcome(f"run folder: {label}", f"seed42/{name}", capsys, argv)
    assert {p for p in tmp_path.iterdir()} == outside


def test_a_damaged_checkpoint_of_an_unfinished_run(run_folder, tmp_path, capsys):
    argv, folder = run_folder
    (folder / "summary.json").unlink()
    (folder / "checkpoint.pt").write_bytes(b"garbage")
    result = outcome("run folder: unfinished, checkpoint garbage", "seed42/checkpoint.pt", capsys, argv)
    assert result.startswith("refused") and "checkpoint" in result
    assert (folder / "checkpoint.pt").read_bytes() == b"garbage"


LINKED = ["summary.json", "identity.json", "history.csv", "export", "figures", "ticket.safetensors", "stale",
          "environment.json", "checkpoint.pt", ".identity.json.1.tmp"]


@pytest.mark.parametrize("name,change", [(n, "reuse") for n in LINKED] + [  # an export measures for seconds: a few
    (n, "export") for n in ("export", "ticket.safetensors")])
def test_a_link_in_a_run_folder(name, change, run_folder, tmp_path, capsys):
    """A link planted in a finished run folder: reusing or exporting it writes nothing through the link."""
    argv, folder = run_folder
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine\n")
    target = victim / "notes.txt" if name not in ("export", "figures", "stale") else victim
    path = folder / name
    if path.is_dir() and not path.is_symlink():
        shutil.copytree(path, victim / "copy")
        shutil.rmtree(path)
    elif path.exists():
        shutil.copy(path, victim / "copy") if name != "summary.json" else None
        path.unlink()
    path.symlink_to(target if name != "summary.json" else victim / "notes.txt")
    before = _snapshot(victim)
    command = argv if change == "reuse" else ["export", str(folder)]
    outcome(f"link {change}: {name}", f"seed42/{name} -> outside", capsys, command)
    assert _snapshot(victim) == before


@pytest.mark.parametrize("where", ["grid point folder", "results parent dangling", "out a dangling link",
                                   "out a link to a file"])
def test_a_linked_experiment_path(where, finished_run, brief, tmp_path, capsys):
    root, _ = finished_run
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine\n")
    out = tmp_path / "out"
    argv = TRAIN + ["--data-root", str(root), "--out", str(out)]
    if where == "grid point folder":
        out.mkdir()
        (out / "lr=0.1").symlink_to(victim)
        argv += ["--grid", "{lr: [0.1]}"]
    elif where == "results parent dangling":
        (tmp_path / "results").symlink_to(tmp_path / "gone")
        argv[-1] = str(tmp_path / "results" / "x")
    elif where == "out a dangling link":
        out.symlink_to(tmp_path / "gone")
    else:
        out.symlink_to(victim / "notes.txt")
    before = _snapshot(victim)
    result = outcome(f"experiment path: {where}", where, capsys, argv)
    assert _snapshot(victim) == before
    if where == "results parent dangling":  # a link above the experiment folder is the user's own setup
        assert result == "accepted" and (tmp_path / "gone" / "x" / "seed42" / "summary.json").is_file()
    else:
        assert result.startswith("refused") and not (tmp_path / "gone").exists()


# -- the render and status commands on odd projects ------------------------------------------------------------

TARGETS = ["results/quick/dynamic_pruning/.ipynb", "results/quick/dynamic_pruning/x.IPYNB",
           "results/quick/dynamic_pruning/x.ipynb/", "results/quick//dynamic_pruning/x.ipynb",
           "results/-q/dynamic_pruning/x.ipynb", "results/quick/dynamic_pruning/\u540d.ipynb",
           "results/quick/dynamic_pruning/" + "x" * 129 + ".ipynb", "results/quick/report/x.ipynb",
           "results/quick/dynamic_pruning/missing.ipynb", "results/quick/dynamic_pruning/a=b.ipynb",
           "results/quick/dynamic_pruning/x y.ipynb", "results/q%d/dynamic_pruning/x.ipynb"]


@pytest.mark.parametrize("target", TARGETS)
def test_a_notebook_target(target, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params" / "profiles").mkdir(parents=True)
    (tmp_path / "params" / "profiles" / "quick.yaml").write_text("")
    before = _snapshot(tmp_path)
    try:
        code = cli.main(["notebook", target])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert code not in (0, None) and "Traceback" not in out + err
    line = next((l for l in out.splitlines() if "FAILED" in l), err.strip())
    assert len(err.strip().splitlines()) <= 1
    ROWS[f"notebook: {target}"[:70]] = (target, "refused: " + line.split("FAILED: ")[-1].removeprefix("dynprune: error: "))
    assert sorted(_snapshot(tmp_path)) == sorted(before) or all(".pipeline" in str(p) or "logs" in str(p)
                                                                for p in set(_snapshot(tmp_path)) - set(before))


STATUS_PROJECTS = {
    "no params folder": {},
    "empty profile": {"params/profiles/quick.yaml": b""},
    "profile a list": {"params/profiles/quick.yaml": b"- 1\n"},
    "profile unknown section": {"params/profiles/quick.yaml": b"weird: 1\n"},
    "profile binary": {"params/profiles/quick.yaml": b"\xff\xfe\x00"},
    "profile billion laughs": {"params/profiles/quick.yaml": ("a: &a [" + ",".join(["1"] * 10) + "]\n" + "".join(
        f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}" if i > 1 else "*a"] * 10) + "]\n" for i in range(1, 9))).encode()},
    "bad param file among good": {"params/profiles/quick.yaml": b"", "params/dynamic_pruning/ok.yaml": b"epochs: 3\n",
                                  "params/dynamic_pruning/bad.yaml": b"epochs: [\n",
                                  "params/dynamic_pruning/a=b.yaml": b"epochs: 3\n"},
    "summary garbage in results": {"params/profiles/quick.yaml": b"", "params/dynamic_pruning/ok.yaml": b"epochs: 3\n",
                                   "results/quick/dynamic_pruning/ok/seed42/summary.json": b"\x00garbage"},
}


@pytest.mark.parametrize("label", list(STATUS_PROJECTS))
def test_status_of_an_odd_project(label, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for rel, content in STATUS_PROJECTS[label].items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    before = _snapshot(tmp_path)
    outcome(f"status: {label}", label, capsys, ["status", "--profile", "quick"])
    assert _snapshot(tmp_path) == before
