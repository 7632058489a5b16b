"""What a reader sees, tested without a kernel: the page blocks rendered as HTML and Markdown, the notebook
tables, the headings."""
import json
from pathlib import Path

from dynprune.config import build
from dynprune.report import present
from dynprune.report.page import Badge, Link, Raw, Section, Table, Text, to_html, to_markdown
from dynprune.runs.lifecycle import Outcome

from conftest import PROJECT


def test_links_are_relative_to_where_the_page_is_written(tmp_path):
    target = tmp_path / "results" / "quick" / "dynamic_pruning" / "x [a=1].html"
    section = Section("T", [Text(["see ", Link("x", target)]), Table(["h"], [[Link("y", target)]])], "t")
    md = to_markdown(section, tmp_path)
    assert "[x](results/quick/dynamic_pruning/x%20%5Ba=1%5D.html)" in md
    html = to_html("title", [section], tmp_path / "results" / "quick")
    assert 'href="dynamic_pruning/x%20%5Ba=1%5D.html"' in html
    assert "https://x.org" in to_markdown(Section("", [Text([Link("web", "https://x.org")])]), tmp_path)


def test_text_from_parameter_files_cannot_inject_markup(tmp_path):
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    html = to_html("t", [Section("S", [Text([hostile]), Table(["h"], [[hostile]]), Raw(hostile, tmp_path)])],
                   tmp_path)
    body = html[html.index("<body>"):]
    assert "<script>alert" not in body and "<img src=x" not in body and "&lt;script&gt;" in body


def test_badges_and_folded_tables():
    html = to_html("t", [Section("S", [Table(["v"], [[Badge("confirmed", "confirmed")]], folded="3 claims")])], Path("."))
    assert '<span class="badge b-confirmed">confirmed</span>' in html and "<details><summary>3 claims</summary>" in html
    assert "| **confirmed** |" in to_markdown(Section("S", [Table(["v"], [[Badge("confirmed", "confirmed")]])]), Path("."))


def run(seed, acc, label="", sparsity=0.8):
    return dict(seed=seed, test_accuracy=acc, sparsity=sparsity, pruned_weights=80, prunable_weights=100, epochs=3,
                train_seconds=1.0, train_flops=1e9, hardware="CPU", device="cpu", data_source="torchvision files MNIST/raw",
                label=label)


def test_a_grid_is_one_table_of_points_with_the_seeds_folded_and_where_it_ran_said_once():
    runs = [run(s, a, "final_sparsity=0.5") for s, a in ((1, 98.0), (2, 97.0))] + [run(1, 96.0, "final_sparsity=0.9")]
    text = present.results_markdown(runs)
    table = text[:text.index("<details>")]
    assert "| final_sparsity=0.5 | 97.50 ± 0.71 (n=2, 95 % CI" in table and "| final_sparsity=0.9 | 96.00 (n=1) |" in table
    assert text.count("Hardware:") == 1 and "Data: torchvision files MNIST/raw." in text
    assert "| 2 | 97.00 |" in text[text.index("<details>"):]  # every seed, folded
    single = present.results_markdown([run(1, 98.0), run(2, 97.0)])
    assert "<details>" not in single and "**Test accuracy: 97.50 ± 0.71 (n=2" in single


def test_runs_read_from_their_folders_are_one_line(capsys):
    outcomes = [Outcome(Path("a"), {}, "reused", 0)] * 3 + [Outcome(Path("b"), {}, "trained", 3)]
    assert present.outcomes_line(outcomes) == ("1 run trained; 3 read from their folders (finished before with these "
                                               "parameters and this training code).")
    log = present.epoch_log(3)
    log("seed42: finished before with these parameters and this training code; read from /x/y")
    log("epoch 1/3  sparsity 0.0")
    assert capsys.readouterr().out == "epoch 1/3  sparsity 0.0\n"  # the folder's path is not in the notebook


def test_the_heading_shows_the_published_number_from_the_claims_file():
    cfg = build(dict(name="lenet_s98", dataset="mnist", model="lenet_300_100", epochs=160, final_sparsity=0.98))
    text = present.heading(cfg, "paper", PROJECT / "params" / "dynamic_pruning" / "lenet_s98.yaml")
    assert "Published: **98.35 %** by the later paper." in text and "LeNet-300-100 on MNIST" in text


def test_the_parameters_table_lists_what_differs_from_the_defaults_first():
    html = present.parameters_html(build(dict(epochs=7, description="<b>x</b>")))
    changed = html[:html.index("All ")]
    assert "<code>epochs</code>" in changed and "<code>lr</code>" not in changed
    assert "&lt;b&gt;x&lt;/b&gt;" in html and json.dumps(7) in html
