"""The life of one run folder (runs/lifecycle.py): trained once, then reused; another identity moved aside whole,
never deleted; nothing written outside the results folder; a ticket check's source run checked before it trains.

Each assertion reads the folder from disk (the files, their JSON, the log lines), not the code under test."""
from __future__ import annotations

import json
import os

import pytest
from conftest import tiny_config

from dynprune.config import ConfigError, runs_of
from dynprune.foundations.storage import LinkError
from dynprune.runs import identity, lifecycle, state


def _run(**changes):
    [run] = runs_of(tiny_config(epochs=1, **changes))
    return run


def _finished_source(inputs):
    """Train `dynamic_pruning/tiny`/seed42 under `inputs`, the run a ticket check retrains; its folder."""
    source = _run()
    folder = inputs / "dynamic_pruning" / "tiny" / source.folder
    lifecycle.ensure(source, folder, "paper", root=inputs, log=lambda _: None)
    return folder


def _key(run) -> str:
    return identity.key(state.run_identity(run.cfg))


def test_a_run_is_trained_once_then_reused_and_each_outcome_is_one_event_line(mnist_root, tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("DYNPRUNE_EVENTS", str(events))
    run, folder, lines = _run(), tmp_path / "out" / "seed42", []
    first = lifecycle.ensure(run, folder, "paper", root=tmp_path / "out", log=lines.append)
    assert (first.action, first.epochs_trained, first.folder) == ("trained", 1, folder.resolve())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary == first.summary and summary["epochs"] == 1 and summary["identity"] == _key(run)
    recorded = json.loads((folder / "identity.json").read_text())
    assert recorded["key"] == _key(run) and recorded["config"] == run.cfg.to_dict()
    assert (folder / "train.log").read_text().splitlines() == lines  # every line logged is in the run's own log

    again_lines = []
    again = lifecycle.ensure(run, folder, "paper", root=tmp_path / "out", log=again_lines.append)
    assert (again.action, again.epochs_trained, again.summary) == ("reused", 0, summary)
    reused = f"seed42: finished before with these parameters and this training code; read from {folder.resolve()}"
    assert again_lines == [reused]
    assert (folder / "train.log").read_text().splitlines() == lines  # a reuse writes nothing into the run
    written = [json.loads(line) for line in events.read_text().splitlines()]
    assert written == [dict(folder=str(folder.resolve()), action="trained", epochs=1,
                            test_accuracy=summary["test_accuracy"], sparsity=summary["sparsity"], variants=None),
                       dict(folder=str(folder.resolve()), action="reused", epochs=0,
                            test_accuracy=summary["test_accuracy"], sparsity=summary["sparsity"], variants=None)]


def test_without_an_events_file_nothing_but_the_run_is_written(mnist_root, tmp_path, monkeypatch):
    monkeypatch.delenv("DYNPRUNE_EVENTS", raising=False)
    lifecycle.ensure(_run(), tmp_path / "out" / "seed42", "paper", root=tmp_path / "out", log=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seed42"]


def test_a_run_of_another_identity_is_moved_aside_whole_and_never_deleted(mnist_root, tmp_path):
    a, b, folder, root = _run(), _run(lr=0.03), tmp_path / "out" / "seed42", tmp_path / "out"
    lines = []
    summary_a = lifecycle.ensure(a, folder, "paper", root=root, log=lines.append).summary
    text_a = (folder / "summary.json").read_text()
    lines.clear()
    second = lifecycle.ensure(b, folder, "paper", root=root, log=lines.append)
    assert second.action == "trained" and second.summary["identity"] == _key(b) != summary_a["identity"]
    assert (folder / "stale" / _key(a) / "summary.json").read_text() == text_a  # the whole of it, byte for byte
    assert {p.name for p in (folder / "stale" / _key(a)).iterdir()} >= {"summary.json", "identity.json", "train.log"}
    assert lines[0].startswith("seed42: it held a run of another identity (") and "lr" in lines[0]
    assert lines[0].endswith(f"differ); moved it to stale/{_key(a)}/")
    assert sorted(p.name for p in (folder / "stale").iterdir()) == [_key(a)]

    assert lifecycle.ensure(a, folder, "paper", root=root, log=lambda _: None).action == "trained"  # A was set aside
    assert lifecycle.ensure(b, folder, "paper", root=root, log=lambda _: None).action == "trained"
    assert sorted(p.name for p in (folder / "stale").iterdir()) == sorted([_key(a), f"{_key(a)}-2", _key(b)])
    for kept in (_key(a), f"{_key(a)}-2", _key(b)):
        assert json.loads((folder / "stale" / kept / "summary.json").read_text())["identity"] == kept.split("-")[0]
    assert json.loads((folder / "summary.json").read_text())["identity"] == _key(b)


def test_a_folder_holding_nothing_of_this_run_is_not_moved(mnist_root, tmp_path):
    folder = tmp_path / "out" / "seed42"
    folder.mkdir(parents=True)
    (folder / "stale").mkdir()  # only what the lifecycle itself keeps there
    lifecycle.ensure(_run(), folder, "paper", root=tmp_path / "out", log=lambda _: None)
    assert list((folder / "stale").iterdir()) == []


def test_a_run_folder_must_lie_inside_the_results_folder(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    assert lifecycle.inside(root, root) == root.resolve()
    assert lifecycle.inside(root / "a" / "seed42", root) == (root / "a" / "seed42").resolve()
    with pytest.raises(ConfigError, match="lies outside .* refusing to write there"):
        lifecycle.inside(root / ".." / "elsewhere", root)
    with pytest.raises(ConfigError, match="lies outside"):
        lifecycle.inside(tmp_path / "out-b" / "seed42", root)  # a sibling whose name starts like the root's
    (tmp_path / "target").mkdir()
    os.symlink(tmp_path / "target", root / "link")
    with pytest.raises(LinkError, match="is a symbolic link; dynprune never writes through one"):
        lifecycle.inside(root / "link" / "seed42", root)
    assert not (tmp_path / "target" / "seed42").exists()


def test_a_ticket_check_reads_only_a_finished_source_of_this_code_on_the_same_network_and_data(mnist_root, tmp_path):
    inputs = tmp_path / "results"
    ticket = _run(method="ticket_check", ticket_from="dynamic_pruning/tiny")
    with pytest.raises(ConfigError, match="^a ticket check needs the results folder its source run is in"):
        lifecycle.ticket_source(ticket.cfg, ticket, None)
    with pytest.raises(ConfigError, match="has no finished run; render dynamic_pruning/tiny of this profile first"):
        lifecycle.ticket_source(ticket.cfg, ticket, inputs)
    folder = _finished_source(inputs)
    found = lifecycle.ticket_source(ticket.cfg, ticket, inputs)
    assert found["folder"].path == folder.resolve() and found["run_folder"] == "seed42"
    assert found["summary"] == json.loads((folder / "summary.json").read_text())

    wider = _run(method="ticket_check", ticket_from="dynamic_pruning/tiny", width=0.5)
    with pytest.raises(ConfigError, match="parameter 'width' is 0.5 here but 0.25 in"):
        lifecycle.ticket_source(wider.cfg, wider, inputs)
    other_seed = runs_of(tiny_config(epochs=1, method="ticket_check", ticket_from="dynamic_pruning/tiny", seed=7))[0]
    with pytest.raises(ConfigError, match="has no finished run"):
        lifecycle.ticket_source(other_seed.cfg, other_seed, inputs)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps(summary | {"code": "0" * 16}))
    with pytest.raises(ConfigError, match=r"other training code \(stale\)"):
        lifecycle.ticket_source(ticket.cfg, ticket, inputs)


def test_a_ticket_check_with_a_variant_finished_before_resumes(mnist_root, tmp_path):
    inputs = tmp_path / "results"
    source_folder = _finished_source(inputs)
    ticket = _run(method="ticket_check", ticket_from="dynamic_pruning/tiny")
    folder = inputs / "ticket" / "tiny" / ticket.folder
    first = lifecycle.ensure(ticket, folder, "paper", root=inputs, inputs=inputs, log=lambda _: None)
    assert first.action == "trained" and first.epochs_trained == 3  # three variants of one epoch (no step k: rewind 0)
    (folder / "summary.json").unlink()  # stopped after its variants, before its own summary
    again = lifecycle.ensure(ticket, folder, "paper", root=inputs, inputs=inputs, log=lambda _: None)
    assert (again.action, again.epochs_trained) == ("resumed", 0)
    assert again.summary["identity"] == first.summary["identity"]
    source_summary = json.loads((source_folder / "summary.json").read_text())
    recorded = json.loads((folder / "identity.json").read_text())["identity"]
    assert recorded["inputs"]["ticket_from"] == source_summary["identity"]  # a retrained source makes it stale
    assert set(first.summary["variants"]) == {"rewind_init", "reinit", "random_mask"}


def test_a_ticket_checks_event_line_names_its_variants(mnist_root, tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("DYNPRUNE_EVENTS", str(events))
    inputs = tmp_path / "results"
    _finished_source(inputs)
    ticket = _run(method="ticket_check", ticket_from="dynamic_pruning/tiny")
    done = lifecycle.ensure(ticket, inputs / "ticket" / "tiny" / ticket.folder, "paper", root=inputs, inputs=inputs,
                            log=lambda _: None)
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["variants"] == done.summary["variants"] and set(last["variants"]) == {"rewind_init", "reinit",
                                                                                      "random_mask"}


def test_a_run_whose_data_is_not_here_is_reused_by_parameters_and_code_and_says_so(mnist_root, tmp_path,
                                                                                  monkeypatch):
    run, folder = _run(), tmp_path / "out" / "seed42"
    lifecycle.ensure(run, folder, "paper", root=tmp_path / "out", log=lambda _: None)
    monkeypatch.setenv("DYNPRUNE_DATA", str(tmp_path / "nothing-here"))
    lines = []
    assert lifecycle.ensure(run, folder, "paper", root=tmp_path / "out", log=lines.append).action == "reused"
    reused = f"seed42: finished before with these parameters and this training code; read from {folder.resolve()}"
    assert lines == [reused + " (its data is not on this machine: judged by its parameters and training code)"]


def test_files_of_no_recorded_identity_are_moved_to_stale_unknown_and_at_most_six_differences_are_named(
        mnist_root, tmp_path):
    folder = tmp_path / "out" / "seed42"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("a colleague's file\n")
    lines = []
    lifecycle.ensure(_run(), folder, "paper", root=tmp_path / "out", log=lines.append)
    assert (folder / "stale" / "unknown" / "notes.txt").read_text() == "a colleague's file\n"
    assert lines[0] == "seed42: it held a run of another identity (everything (no identity recorded) differ); moved " \
                       "it to stale/unknown/"
    many = _run(lr=0.03, batch_size=16, momentum=0.5, weight_decay=0.001, label_smoothing=0.05, final_sparsity=0.5,
                nesterov=True)
    lines.clear()
    lifecycle.ensure(many, folder, "paper", root=tmp_path / "out", log=lines.append)
    named = lines[0].split(" (", 1)[1].split(" differ)")[0]
    assert named == "batch_size, final_sparsity, label_smoothing, lr, momentum, nesterov"  # the first six, sorted


def test_the_rank_entry_point_trains_the_run_its_folder_names_or_stops_in_one_line(mnist_root, tmp_path, capsys):
    from dynprune.foundations.text_files import json_text
    run, folder = _run(), tmp_path / "seed42"
    folder.mkdir()
    (folder / "identity.json").write_text(json_text(dict(config=run.cfg.to_dict())))
    capsys.readouterr()
    assert lifecycle.main([str(folder), "paper"]) == 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["identity"] == _key(run) and summary["profile"] == "paper"
    assert "final model: test accuracy" in capsys.readouterr().out  # one process, not under torchrun: it speaks
    cuda = tmp_path / "cuda"
    cuda.mkdir()
    (cuda / "identity.json").write_text(json_text(dict(config=run.cfg.to_dict() | {"device": "cuda"})))
    capsys.readouterr()
    if not __import__("torch").cuda.is_available():
        assert lifecycle.main([str(cuda), "paper"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dynprune: error: ") and err.count("\n") == 1
        assert not (cuda / "summary.json").exists()
