"""`make experiments` on a tiny project: what it renders, what it prints, what it never does."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PROJECT, make_mnist

TINY = """description: "tiny LeNet run for the tests"
dataset: mnist
model: lenet_300_100
init: kaiming_fan_in
width: 0.25
epochs: 2
batch_size: 32
lr: 0.05
final_sparsity: {sparsity}
download: false
threads: 1
"""

pytestmark = pytest.mark.e2e


@pytest.fixture
def project(tmp_path) -> Path:
    """A project of its own: the real Makefile and notebooks, three tiny experiments, tiny MNIST."""
    root = tmp_path / "project"
    (root / "params" / "dynamic_pruning").mkdir(parents=True)
    (root / "params" / "compare").mkdir()
    (root / "params" / "profiles").mkdir()
    (root / "params" / "profiles" / "paper.yaml").write_text("")
    (root / "params" / "dynamic_pruning" / "a.yaml").write_text(TINY.format(sparsity=0.5))
    (root / "params" / "dynamic_pruning" / "b.yaml").write_text(TINY.format(sparsity=0.8))
    (root / "params" / "compare" / "ab.yaml").write_text(  # a flow-style list of inputs
        "inputs: [dynamic_pruning/a, dynamic_pruning/b]\n")
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(PROJECT / name, root / name)
        os.utime(root / name, (0, 0))  # older than the venv's stamp: make never reinstalls
    (root / ".venv").symlink_to(PROJECT / ".venv")
    shutil.copytree(PROJECT / "notebooks", tmp_path / "notebooks")
    make_mnist(tmp_path / "data")
    return root


def make(root: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")} | {
        "DYNPRUNE_DATA": str(root.parent / "data"), "DYNPRUNE_CACHE": str(root.parent / "cache"),
        "DYNPRUNE_NOTEBOOKS": str(root.parent / "notebooks"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)


def notebook_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[")]


def test_the_log_a_person_reads_what_a_change_renders_and_a_bad_file_failing_alone(project):
    first = make(project, "experiments", "JOBS=2")
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.strip().splitlines()
    assert lines[0] == "paper profile: 3 notebooks, 0 up to date, 3 to render (2 at a time)"
    assert len(notebook_lines(first.stdout)) == 6  # one line when each starts, one when it ends
    assert any(line.startswith("[3/3] compare/ab done in") for line in lines)
    assert lines[-2].startswith("done in ") and "3 rendered (2 trained 2 runs, 4 epochs in all" in lines[-2]
    assert lines[-1] == "3 notebooks, every finished run above 1.5x chance"  # the closing line on learning
    for chatter in ("WARNING", "KeyboardInterrupt", "Traceback", "TCP", "make:", "make["):
        assert chatter not in first.stdout + first.stderr
    assert "rendering dynamic_pruning/a" in (project / "results/paper/logs/dynamic_pruning/a.log").read_text()
    summaries = sorted((project / "results").rglob("summary.json"))

    again = make(project, "experiments")
    assert again.returncode == 0 and "3 up to date, 0 to render" in again.stdout

    # saving a value into the notebook's parameters cell (what JupyterLab does) renders nothing
    source = project.parent / "notebooks" / "dynamic_pruning.py"
    source.write_text(source.read_text().replace("overrides = {}", 'overrides = {"epochs": 1}'))
    assert "3 up to date, 0 to render" in make(project, "experiments").stdout

    # a change to what the notebook shows re-renders it, reading the finished runs only; at the same time a bad key
    # in b's file fails b in one line (its finished result untouched), a still renders, and ab, which reads b, waits
    source.write_text(source.read_text().replace("## Where the zeros are", "## Where the zeros lie"))
    (project / "params" / "dynamic_pruning" / "b.yaml").write_text(TINY.format(sparsity=0.8) + "final_sparsty: 0.9\n")
    compared = (project / "results/paper/compare/ab.ipynb").stat().st_mtime_ns
    start = time.time()
    shown = make(project, "experiments", "JOBS=2")
    assert shown.returncode != 0 and "0 up to date, 3 to render" in shown.stdout
    assert "Where the zeros lie" in (project / "results/paper/dynamic_pruning/a.html").read_text()
    assert "1 rendered (0 trained 0 runs, 0 epochs in all; 1 only read finished runs)" in shown.stdout, shown.stdout
    failed = [line for line in shown.stdout.splitlines() if "FAILED" in line and line.startswith("[")]
    assert len(failed) == 1 and "dynamic_pruning/b FAILED" in failed[0]
    assert "b.yaml" in failed[0] and "did you mean 'final_sparsity'" in failed[0]
    assert "1 not started because an input failed" in shown.stdout
    assert (project / "results/paper/compare/ab.ipynb").stat().st_mtime_ns == compared
    assert "Traceback" not in shown.stdout + shown.stderr
    assert "make[" not in shown.stdout + shown.stderr  # only the top-level make's closing "Error" line remains
    assert sorted((project / "results").rglob("summary.json")) == summaries
    assert (project / "results/paper/dynamic_pruning/b.ipynb").is_file()
    assert not list((project / "results").rglob("stale"))
    print(f"re-render after a presentation change: {time.time() - start:.1f} s")


def test_two_makes_of_the_same_target_leave_one_intact_result_and_one_clear_line(project):
    target = "results/paper/dynamic_pruning/b.ipynb"
    (project / "params" / "dynamic_pruning" / "b.yaml").write_text(TINY.replace("epochs: 2", "epochs: 30").format(
        sparsity=0.8))
    env_make = lambda: subprocess.Popen(  # noqa: E731
        ["make", "--no-print-directory", target], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")} | {
            "DYNPRUNE_DATA": str(project.parent / "data"), "DYNPRUNE_CACHE": str(project.parent / "cache"),
            "DYNPRUNE_NOTEBOOKS": str(project.parent / "notebooks"), "OMP_NUM_THREADS": "1"})
    first = env_make()
    lock = project / "results/paper/.pipeline/locks/dynamic_pruning/b.lock"
    deadline = time.time() + 60
    while time.time() < deadline and not (lock.is_file() and lock.read_text()):
        time.sleep(0.05)
    second = env_make()
    out2, _ = second.communicate(timeout=300)
    out1, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out1
    assert second.returncode != 0 and "is in use by process" in out2 and "Traceback" not in out2
    assert len([line for line in out2.splitlines() if "FAILED" in line]) == 1
    assert (project / target).is_file()  # make deleted nothing the first one rendered
    assert json.loads((project / "results/paper/dynamic_pruning/b/seed42/summary.json").read_text())["epochs"] == 30


def test_hostile_file_names_and_values_never_become_make_or_shell_syntax(project, tmp_path):
    marker = project / "PWNED"  # make runs in the project folder: a command smuggled in would create it there
    for name in ("a", "b"):  # nothing here needs a training run: only the hostile files are rendered
        (project / "params" / "dynamic_pruning" / f"{name}.yaml").unlink()
    ticket = project / "params" / "ticket"
    ticket.mkdir()
    (ticket / "x;touch${IFS}PWNED;.yaml").write_text("method: ticket_check\nticket_from: dynamic_pruning/a\n")
    assert make(project, "help").returncode == 0 and not marker.exists()
    proc = make(project, "experiments")
    assert proc.returncode != 0 and not marker.exists()
    assert "is not a plain name" in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr
    shutil.rmtree(ticket)
    (project / "params" / "compare" / "ab.yaml").write_text("inputs: [';touch${IFS}PWNED']\n")
    proc = make(project, "experiments")
    assert not marker.exists() and "must name an experiment as <notebook>/<name>" in proc.stdout
