"""The scheduler's graph and stamps, and `make status`, on prepared projects: no kernel, no training."""
import json
from pathlib import Path

import pytest

from dynprune.config import resolve, runs_of
from dynprune.foundations.storage import locked
from dynprune.foundations.text_files import json_text
from dynprune.pipeline import schedule, status
from dynprune.runs import identity
from dynprune.runs.paths import Rendered
from dynprune.runs.state import run_identity


TINY = ("dataset: mnist\nmodel: lenet_300_100\nwidth: 0.25\nepochs: 2\nbatch_size: 32\nlr: 0.05\n"
        "final_sparsity: {s}\ndownload: false\nseeds: [1, 2]\n")


@pytest.fixture
def project(tmp_path, monkeypatch):
    for kind in ("dynamic_pruning", "ticket", "compare", "report", "profiles"):
        (tmp_path / "params" / kind).mkdir(parents=True)
    (tmp_path / "params" / "profiles" / "paper.yaml").write_text("")
    (tmp_path / "params" / "dynamic_pruning" / "a.yaml").write_text(TINY.format(s=0.5))
    (tmp_path / "params" / "dynamic_pruning" / "b.yaml").write_text(TINY.format(s=0.8) + "rewind_step: 5\n")
    (tmp_path / "params" / "ticket" / "t.yaml").write_text(
        TINY.format(s=0.8) + "rewind_step: 5\nmethod: ticket_check\nticket_from: dynamic_pruning/b\n")
    (tmp_path / "params" / "compare" / "ab.yaml").write_text("inputs: [dynamic_pruning/a, dynamic_pruning/b]\n")
    (tmp_path / "params" / "report" / "summary.yaml").write_text("description: all\n")
    monkeypatch.setenv("DYNPRUNE_DATA", str(tmp_path / "no-data"))
    return tmp_path


def test_the_graph_orders_inputs_first_and_names_what_each_reads(project):
    nodes = schedule.graph(project, "paper")[0]
    keys = list(nodes)
    assert keys == ["dynamic_pruning/a", "dynamic_pruning/b", "ticket/t", "compare/ab", "report/summary"]
    assert nodes["ticket/t"].inputs == ["dynamic_pruning/b"]
    assert nodes["compare/ab"].inputs == ["dynamic_pruning/a", "dynamic_pruning/b"]
    assert nodes["report/summary"].inputs == keys[:-1]


def test_a_stamp_follows_what_a_notebook_is_made_from_and_what_it_reads(project):
    before = schedule.graph(project, "paper")[0]
    (project / "params" / "dynamic_pruning" / "a.yaml").write_text(TINY.format(s=0.5) + "# a comment only\n")
    same = schedule.graph(project, "paper")[0]
    assert {k: n.stamp for k, n in same.items()} == {k: n.stamp for k, n in before.items()}  # resolved parameters
    (project / "params" / "dynamic_pruning" / "a.yaml").write_text(TINY.format(s=0.6))
    after = schedule.graph(project, "paper")[0]
    changed = {k for k in after if after[k].stamp != before[k].stamp}
    assert changed == {"dynamic_pruning/a", "compare/ab", "report/summary"}  # a and what reads it, nothing else


def test_a_file_that_does_not_resolve_is_a_node_that_will_fail_alone(project):
    (project / "params" / "dynamic_pruning" / "a.yaml").write_text(TINY.format(s=0.5) + "final_sparsty: 1\n")
    nodes = schedule.graph(project, "paper")[0]
    assert "unreadable" in nodes["dynamic_pruning/a"].made_from and nodes["dynamic_pruning/b"].made_from["params"]


def test_up_to_date_needs_the_notebook_and_a_stamp_equal_to_now(project):
    node = schedule.graph(project, "paper")[0]["dynamic_pruning/a"]
    files = Rendered(project / "results" / "paper", "dynamic_pruning", "a")
    assert not schedule.up_to_date(node, files)
    files.notebook.parent.mkdir(parents=True)
    files.notebook.write_text("{}")
    assert not schedule.up_to_date(node, files)  # rendered by something that left no stamp
    files.stamp.parent.mkdir(parents=True)
    files.stamp.write_text(node.stamp)
    assert schedule.up_to_date(node, files)
    files.stamp.write_text("another")
    assert not schedule.up_to_date(node, files)


def write_run(project: Path, key: str, run, *, stale: bool = False) -> None:
    folder = project / "results" / "paper" / key / run.folder
    folder.mkdir(parents=True)
    ident = run_identity(run.cfg)
    key_text = "0" * 16 if stale else identity.key(ident)
    (folder / "identity.json").write_text(json_text(dict(key=key_text, identity=ident)))
    (folder / "summary.json").write_text(json_text(dict(identity=key_text, test_accuracy=97.5)))


def test_status_tells_done_stale_failed_missing_and_running_apart(project, capsys):
    results = project / "results" / "paper"
    a, b = (runs_of(resolve(project / "params" / "dynamic_pruning" / f"{n}.yaml", "paper")) for n in "ab")
    for run in a:
        write_run(project, "dynamic_pruning/a", run)
    write_run(project, "dynamic_pruning/b", b[0], stale=True)
    write_run(project, "dynamic_pruning/b", b[1])
    for key in ("dynamic_pruning/a", "dynamic_pruning/b"):
        (results / f"{key}.ipynb").write_text("{}")
    (results / "ticket").mkdir()
    (results / "ticket" / "t.failed.ipynb").write_text("{}")
    with locked(Rendered(results, "compare", "ab").lock, "test"):  # a render holds it
        status.print_status("paper", project)
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["dynamic_pruning/a"].split()[1] == "done" and "97.50 % ± 0.00 (n=2)" in lines["dynamic_pruning/a"]
    assert lines["dynamic_pruning/b"].split()[1] == "stale" and "1 of 2 runs made by other" in lines["dynamic_pruning/b"]
    assert lines["ticket/t"].split()[1] == "failed"
    assert lines["compare/ab"].split()[1] == "running"
    assert lines["report/summary"].split()[1] == "missing"
    assert lines["paper:"] == "paper: 1 done, 1 running, 1 failed, 1 stale, 1 missing"


def test_a_run_at_chance_is_reported_by_name(project):
    """The closing line of `make experiments`: every finished run above 1.5x chance, or each one that is not."""
    from dynprune.analysis.results import collect
    a = runs_of(resolve(project / "params" / "dynamic_pruning" / "a.yaml", "paper"))
    for run, accuracy in zip(a, (14.0, 97.5)):
        write_run(project, "dynamic_pruning/a", run)
        path = project / "results" / "paper" / "dynamic_pruning" / "a" / run.folder / "summary.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | dict(test_accuracy=accuracy, classes=10)))
    res = collect(project / "results" / "paper", project / "params", "paper")
    lines = schedule.learning_line(res, 5).splitlines()
    assert lines[0] == "1 finished run(s) below 1.5x chance: they may not learn at all"
    assert lines[1] == "  at chance: dynamic_pruning/a/seed1: 14.00 %, below 15 % (1.5x chance)"
    path.write_text(json.dumps(json.loads(path.read_text()) | dict(test_accuracy=16.0)))
    first = project / "results" / "paper" / "dynamic_pruning" / "a" / "seed1" / "summary.json"
    first.write_text(json.dumps(json.loads(first.read_text()) | dict(test_accuracy=15.0)))
    res = collect(project / "results" / "paper", project / "params", "paper")
    assert schedule.learning_line(res, 5) == "5 notebooks, every finished run above 1.5x chance"
