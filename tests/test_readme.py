"""The README is for users: short, and every command in it runs as written, in a project of its own (the real
Makefile, code, notebooks and parameter files) on tiny MNIST-shaped data. Three commands run in a reduced form, each
saying why in REDUCED: only the environment, a make variable or make's dry run (-n) narrows them, never the
command's own words."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PROJECT, make_mnist

README = PROJECT / "README.md"

# command as the README writes it -> (make variables added, environment added, why it cannot run whole here)
REDUCED = {
    "make experiments PROFILE=quick": (
        ["ONLY=dynamic_pruning/lenet_s78.9"], {},
        "reduced: its 66 notebooks take minutes; ONLY= renders the one the README names next"),
    "make test": (
        ["-n"], {},
        "reduced to a dry run: it is the suite this test is part of (minutes, and it would run itself); CI runs it "
        "whole (.ci/run)"),
    "make lab": (
        ["-n"], {},
        "reduced to a dry run: it serves JupyterLab until stopped, after pip-installing JupyterLab and a kernel into "
        "the venv; tests/test_lab.py serves the notebooks with jupyter_server and runs them"),
}


# commands that read a whole data set (no profile subset): given the small data folder, so that they take seconds
SMALL_DATA = ("--out runs/sweep",)


def commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(re.sub(r"\s+", " ", line))
    return lines


def test_the_readme_is_short_and_speaks_to_users():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    for journal in ("session", "issue #", "commit ", "we checked", "missed"):
        assert journal not in text.lower()
    assert "make experiments" in text and "make test" in text and "arxiv.org/abs/2606.12278" in text


def test_every_reduced_command_is_still_in_the_readme():
    assert set(REDUCED) <= set(commands())


@pytest.fixture
def project(tmp_path) -> Path:
    """The project's code, notebooks, tests and parameter files (linked), its Makefile and the venv; tiny MNIST
    (2,000 training and 500 test images: what the quick profile's subsets need) as the data folder, and 300 images
for the one command that reads whole data sets (SMALL_DATA)."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dynprune", "notebooks", "params", "tests"):
        (root / name).symlink_to(PROJECT / name)
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(PROJECT / name, root / name)
        os.utime(root / name, (0, 0))  # older than the venv's stamp: make never reinstalls
    venv = PROJECT / ".venv" if (PROJECT / ".venv").is_dir() else Path(sys.prefix)  # a worktree has none
    (root / ".venv").symlink_to(venv)
    make_mnist(tmp_path / "data", n_train=2000, n_test=500)
    make_mnist(tmp_path / "small-data", n_train=300, n_test=100)
    return root


@pytest.mark.e2e
def test_every_readme_command_runs_as_written(project):
    """In the README's order, in one project: the render of the first command is what the later ones read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k != "PYTEST_ADDOPTS"} | {
        "DYNPRUNE_DATA": str(project.parent / "data"), "DYNPRUNE_CACHE": str(project.parent / "cache"),
        "PYTHONPATH": str(project), "OMP_NUM_THREADS": "1"}
    ran = []
    for command in commands():
        argv = shlex.split(command)
        extra_args, extra_env, why = REDUCED.get(command, ([], {}, "as written"))
        assert not extra_args or argv[0] == "make", command
        if any(marker in command for marker in SMALL_DATA):
            extra_env = extra_env | {"DYNPRUNE_DATA": str(project.parent / "small-data")}
        if argv[0] == "export":  # a shell assignment: run by the shell, as written
            argv = ["bash", "-c", command]
        start = time.monotonic()
        proc = subprocess.run(argv[:1] + extra_args + argv[1:] if argv[0] == "make" else argv, cwd=project, env=env | extra_env, capture_output=True, text=True,
                              timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{command} ({why})\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in out, f"{command}\n{out[-2000:]}"
        ran.append((command, why, out))
        print(f"{time.monotonic() - start:5.1f} s  {command}  ({why})")

    results = project / "results"
    by_command = {c: out for c, _, out in ran}
    assert (results / "quick" / "dynamic_pruning" / "lenet_s78.9.ipynb").is_file()
    assert "1 up to date, 0 to render" in by_command["make results/quick/dynamic_pruning/lenet_s78.9.ipynb"]
    status = next(line for line in by_command["make status PROFILE=quick"].splitlines()
                  if line.startswith("dynamic_pruning/lenet_s78.9 "))
    assert status.split()[1] == "done", status
    assert "lint-imports" in by_command["make test"] and "pytest -q -n 2" in by_command["make test"]
    assert "jupyter lab" in by_command["make lab"]
    trained = [json.loads(p.read_text()) for p in (results / "cli" / "quick").rglob("summary.json")]
    assert [round(s["sparsity"], 4) for s in trained] == [0.9]
    sweep = [json.loads(p.read_text()) for p in (project / "runs" / "sweep").rglob("summary.json")]
    assert sorted((s["seed"], s["params"]["final_sparsity"], s["epochs"]) for s in sweep) == [
        (1, 0.5, 4), (1, 0.9, 4), (2, 0.5, 4), (2, 0.9, 4)]
    assert len(ran) == len(commands())
