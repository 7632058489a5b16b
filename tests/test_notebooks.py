"""Every notebook rendered headlessly through the same runner `make experiments` uses, on tiny data."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT, make_mnist

TINY = """description: "tiny LeNet run for the tests"
dataset: mnist
model: lenet_300_100
init: kaiming_fan_in
width: 0.25
epochs: 3
batch_size: 32
lr: 0.05
final_sparsity: 0.7
val_fraction: 0.2
download: false
"""


def render(root: Path, target: str, data: Path, extra_env: dict | None = None):
    env = os.environ | {"DYNPRUNE_DATA": str(data), "DYNPRUNE_CACHE": str(root / "cache")} | (extra_env or {})
    return subprocess.run([sys.executable, "-m", "dynprune", "notebook", str(root / target)], env=env,
                          capture_output=True, text=True, timeout=300)


def train_in_process(project: Path, key: str) -> None:
    """What `key`'s notebook leaves for the notebooks that read it, without a kernel: its runs, each through the
    same lifecycle call the notebook makes (`runs.ensure`), then, last, the rendered notebook that marks them done."""
    import nbformat
    from dynprune.runs import lifecycle as runs
    from dynprune.config import resolve, runs_of
    out = project / "results" / "paper"
    for run in runs_of(resolve(project / "params" / f"{key}.yaml", "paper")):
        runs.ensure(run, out / key / run.folder, "paper", root=out / key, inputs=out, log=lambda _: None)
    nbformat.write(nbformat.v4.new_notebook(), out / f"{key}.ipynb")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project of its own with tiny MNIST; this process points at them too (for `train_in_process`)."""
    monkeypatch.setenv("DYNPRUNE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "params" / "dynamic_pruning").mkdir(parents=True)
    (tmp_path / "params" / "profiles").mkdir()
    (tmp_path / "params" / "profiles" / "paper.yaml").write_text("")
    (tmp_path / "params" / "dynamic_pruning" / "tiny.yaml").write_text(TINY)
    make_mnist(tmp_path / "data")
    return tmp_path


@pytest.mark.e2e
def test_dynamic_pruning_notebook_renders_a_complete_run_whatever_its_parameters_cell_saved(project, tmp_path):
    """JupyterLab saves the parameters cell into notebooks/*.py; the batch renderer injects every variable."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(PROJECT / "notebooks", notebooks)
    source = notebooks / "dynamic_pruning.py"
    text = source.read_text()
    assert "overrides = {}" in text
    source.write_text(text.replace("overrides = {}", 'overrides = {"epochs": 1}')
                      .replace('profile = "quick"', 'profile = "quick"  # saved from the lab'))
    proc = render(project, "results/paper/dynamic_pruning/tiny.ipynb", project / "data",
                  extra_env={"DYNPRUNE_NOTEBOOKS": str(notebooks)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = project / "results" / "paper" / "dynamic_pruning"
    assert (out / "tiny.ipynb").is_file() and (out / "tiny.html").is_file()
    assert not (out / "tiny.running.ipynb").exists()
    run = out / "tiny" / "seed42"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sparsity"] == round(0.7 * summary["prunable_weights"]) / summary["prunable_weights"]
    assert summary["target_sparsity"] == 0.7 and summary["pruned_but_nonzero"] == 0
    assert 30 < summary["test_accuracy"] <= 100 and summary["profile"] == "paper"
    assert summary["epochs"] == 3 and summary["params"]["epochs"] == 3  # the file's own epochs, not the saved 1
    assert summary["params"]["name"] == "tiny" and summary["train_seconds"] > 0
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(r["val_accuracy"] != "" for r in rows)
    assert float(rows[-1]["sparsity"]) == pytest.approx(0.7, abs=1e-4)
    for fig in ("training_curves", "sparsity", "layer_sparsity"):
        assert (run / "figures" / f"{fig}.png").stat().st_size > 5000
    html = (out / "tiny.html").read_text()
    assert "image/png" in html and "test accuracy" in html and "torchvision files MNIST/raw" in html
    assert html.index("Result") < html.index("Parameters: ") and "<details>" in html  # results first, parameters folded
    assert "(empty)" in html and "``" not in html
    assert (project / "results" / "paper" / "logs" / "dynamic_pruning" / "tiny.log").is_file()
    assert proc.stdout.splitlines()[0].startswith("dynamic_pruning/tiny (paper)")
    assert "dynamic_pruning/tiny done in" in proc.stdout.splitlines()[-1] and "1 run(s) trained, 3 epochs" in proc.stdout
    assert len(proc.stdout.strip().splitlines()) == 2 and proc.stderr == ""
    assert "Traceback" not in html


@pytest.mark.e2e
def test_a_grid_renders_one_run_per_point_and_seed_and_reuses_the_finished_ones(project):
    from dynprune.runs import lifecycle as runs
    from dynprune.config import resolve, runs_of
    params = project / "params" / "dynamic_pruning" / "tiny.yaml"
    base = TINY.replace("epochs: 3", "epochs: 2") + "seeds: [1, 2]\n"
    params.write_text(base + "grid: {final_sparsity: [0.5, 0.9]}\n")
    assert render(project, "results/paper/dynamic_pruning/tiny.ipynb", project / "data").returncode == 0
    out = project / "results" / "paper" / "dynamic_pruning"
    first = {}
    for point in ("final_sparsity=0.5", "final_sparsity=0.9"):
        for seed in (1, 2):
            summary = json.loads((out / "tiny" / point / f"seed{seed}" / "summary.json").read_text())
            target = float(point.split("=")[1])
            assert summary["sparsity"] == round(target * summary["prunable_weights"]) / summary["prunable_weights"]
            assert summary["pruned_but_nonzero"] == 0 and summary["seed"] == seed and summary["params"]["grid"] == {}
            first[point, seed] = summary["finished_at"], (out / "tiny" / point / f"seed{seed}" / "ticket.safetensors").stat().st_mtime_ns

    params.write_text(base + "grid: {final_sparsity: [0.5, 0.9, 0.8]}\n")  # one more point: only it trains
    proc = render(project, "results/paper/dynamic_pruning/tiny.ipynb", project / "data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for (point, seed), (finished_at, mtime) in first.items():
        folder = out / "tiny" / point / f"seed{seed}"
        assert json.loads((folder / "summary.json").read_text())["finished_at"] == finished_at
        assert (folder / "ticket.safetensors").stat().st_mtime_ns == mtime
    html = (out / "tiny.html").read_text()
    assert "2 runs trained; 4 read from their folders (finished before with these parameters" in html
    assert "2 run(s) trained, 4 epochs" in proc.stdout and "(n=2, 95 % CI" in html
    assert "<summary>Every run" in html  # the per-seed rows folded under the table of grid points
    assert "Traceback" not in html

    # a result made with other parameters or code is never deleted: the notebook's lifecycle call moves it to
    # stale/ and redoes the run (called here without a kernel)
    params.write_text(base.replace("lr: 0.05", "lr: 0.04") + "grid: {final_sparsity: [0.5]}\n")
    run = runs_of(resolve(params, "paper"))[0]
    folder = out / "tiny" / run.folder
    assert runs.ensure(run, folder, "paper", root=out / "tiny", log=lambda _: None).action == "trained"
    stale = list((folder / "stale").iterdir())
    assert len(stale) == 1 and json.loads((stale[0] / "summary.json").read_text())["finished_at"] == first[
        run.point_folder, run.cfg.seed][0]
    assert json.loads((folder / "summary.json").read_text())["params"]["lr"] == 0.04


@pytest.mark.e2e
def test_a_failed_run_is_kept_for_inspection_and_never_taken_as_done(project):
    proc = render(project, "results/paper/dynamic_pruning/tiny.ipynb", project / "no-data-here")
    assert proc.returncode != 0
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("dynamic_pruning/tiny FAILED: DataError: mnist not found") and "kept in" in last
    out = project / "results" / "paper" / "dynamic_pruning"
    assert (out / "tiny.failed.ipynb").is_file()
    assert not (out / "tiny.ipynb").exists() and not list((out / "tiny").rglob("summary.json"))


@pytest.mark.e2e
def test_bad_parameters_stop_before_any_kernel_starts(project):
    path = project / "params" / "dynamic_pruning" / "tiny.yaml"
    path.write_text(TINY.replace("final_sparsity: 0.7", "final_sparsity: 1.5"))
    proc = render(project, "results/paper/dynamic_pruning/tiny.ipynb", project / "data")
    assert proc.returncode != 0
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("dynamic_pruning/tiny FAILED: ") and "final_sparsity" in last and "tiny.yaml" in last
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not list((project / "results").rglob("*.ipynb"))


def test_every_notebook_is_a_parameterized_percent_script():
    import jupytext
    from dynprune.pipeline.render import parameter_names
    for path in (PROJECT / "notebooks").glob("*.py"):
        nb = jupytext.read(path)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
        assert set(parameter_names(nb, path)) >= {"experiment", "profile", "overrides", "run_dir"}


def welch_by_hand(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's 95 % interval of mean(a) - mean(b), from the textbook formulas; the t quantile by bisection on the
    integrated t density (test_stats.t_density_integral), sharing nothing with dynprune.analysis.stats."""
    from test_stats import t_density_integral
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    if va + vb == 0:
        return ma - mb, ma - mb
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    lo, hi = 0.0, 200.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_density_integral(mid, df, 2000) < 0.475 else (lo, mid)
    half = (lo + hi) / 2 * (va + vb) ** 0.5
    return ma - mb - half, ma - mb + half


@pytest.mark.e2e
def test_the_compare_notebook_renders_a_comparison_of_every_method(project):
    """The runs it reads are trained in this process (the lottery and ticket notebooks render in the grid test)."""
    base = TINY.replace("val_fraction: 0.2\n", "val_fraction: 0.0\nseeds: [1, 2]\nrewind_step: 5\n")
    params = project / "params"
    for kind in ("lottery", "ticket", "compare"):
        (params / kind).mkdir()
    (params / "dynamic_pruning" / "tiny.yaml").write_text(base)
    (params / "dynamic_pruning" / "tiny_dense.yaml").write_text(base.replace("final_sparsity: 0.7", "final_sparsity: 0.0"))
    (params / "lottery" / "tiny_imp.yaml").write_text(base + "method: imp\nimp_rate: 0.5\n")
    (params / "ticket" / "tiny.yaml").write_text(base + "method: ticket_check\nticket_from: dynamic_pruning/tiny\n")
    (params / "compare" / "tiny.yaml").write_text(
        "inputs: [dynamic_pruning/tiny_dense, dynamic_pruning/tiny, lottery/tiny_imp, ticket/tiny]\n")
    (params / "claims.yaml").write_text(
        "publications: {seed: {label: the seed, cite: a citation}}\nclaims:\n"
        "  - {source: seed, kind: winning_ticket, experiment: ticket/tiny, dense: dynamic_pruning/tiny_dense,"
        " claim: the mask is a winning ticket}\n"
        "  - {source: seed, kind: cost, experiment: dynamic_pruning/tiny, against: lottery/tiny_imp, claim: cheaper}\n")
    for key in ("dynamic_pruning/tiny_dense", "dynamic_pruning/tiny", "lottery/tiny_imp", "ticket/tiny"):
        train_in_process(project, key)
    proc = render(project, "results/paper/compare/tiny.ipynb", project / "data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = project / "results" / "paper"
    imp = json.loads((out / "lottery" / "tiny_imp" / "seed1" / "summary.json").read_text())
    assert [round(r["sparsity"], 4) for r in imp["levels"]] == [0.0, 0.5, 0.7]
    assert imp["epochs"] == 9 and imp["sparsity"] == pytest.approx(0.7, abs=1e-4)
    assert imp["train_steps"] == 3 * 19 + 2 * (3 * 19 - 5)  # 600 images / 32 = 19 steps; later levels from step 5
    ticket = json.loads((out / "ticket" / "tiny" / "seed2" / "summary.json").read_text())
    assert set(ticket["variants"]) == {"rewind_init", "rewind_k", "reinit", "random_mask"}
    rows = list(csv.DictReader(open(out / "compare" / "tiny" / "comparison.csv")))
    assert {"method", "seed", "target_sparsity", "sparsity", "test_accuracy", "epochs", "train_seconds",
            "train_flops"} <= set(rows[0])
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
        (m, s) for m in ("dense", "dynamic", "imp (rewind to step 5)") for s in ("1", "2"))
    by_method = {r["method"]: r for r in rows}
    # dense cycle of 57 steps (600 images / 32, 3 epochs), then two levels rewound to step 5: 52 steps each
    assert float(by_method["imp (rewind to step 5)"]["train_flops"]) == pytest.approx(
        float(by_method["dynamic"]["train_flops"]) * (57 + 52 + 52) / 57)
    html = (out / "compare" / "tiny.html").read_text()
    assert "the mask is a winning ticket (dynamic_pruning/tiny)" in html and "never filled in): none" in html
    claims = json.loads((out / "compare" / "tiny" / "summary.json").read_text())["claims"]
    assert [c["experiment"] for c in claims] == ["ticket/tiny", "dynamic_pruning/tiny"]
    # the expected verdicts, from the summaries by hand (Welch's interval, the t quantile by integrating the density)
    accuracy = lambda key: [json.loads((out / key / f"seed{s}" / "summary.json").read_text())  # noqa: E731
                            for s in (1, 2)]
    tickets = accuracy("ticket/tiny")
    rewound, reinit = ([s["variants"][v] for s in tickets] for v in ("rewind_k", "reinit"))
    dense = [s["test_accuracy"] for s in accuracy("dynamic_pruning/tiny_dense")]
    dynamic = [s["test_accuracy"] for s in accuracy("dynamic_pruning/tiny")]
    imp_acc = [s["test_accuracy"] for s in accuracy("lottery/tiny_imp")]
    to_dense, to_reinit = welch_by_hand(rewound, dense), welch_by_hand(rewound, reinit)
    ticket_verdict = ("confirmed" if to_dense[0] >= -0.5 and to_reinit[0] > 0 else
                      "not confirmed" if to_dense[1] < -0.5 or to_reinit[1] <= 0 else "inconclusive")
    low, high = welch_by_hand(dynamic, imp_acc)  # FLOPs 57 / 161 of IMP's: cheaper; then comparable within 0.5?
    cost_verdict = "confirmed" if low > -0.5 else "not confirmed" if high < -0.5 else "inconclusive"
    assert [c["verdict"] for c in claims] == [ticket_verdict, cost_verdict], (rewound, reinit, dense, dynamic, imp_acc)
    assert "retrained from rewind_k" in claims[0]["ours"] and "× the training FLOPs" in claims[1]["ours"]
    assert (out / "compare" / "tiny" / "accuracy_vs_cost.png").is_file()


@pytest.mark.e2e
def test_a_grid_runs_through_the_lottery_and_ticket_notebooks_point_by_point(project):
    base = TINY.replace("val_fraction: 0.2\n", "val_fraction: 0.0\nrewind_step: 5\n").replace("epochs: 3", "epochs: 2") \
        + "grid: {final_sparsity: [0.5, 0.7]}\n"
    params = project / "params"
    for kind in ("lottery", "ticket"):
        (params / kind).mkdir()
    (params / "dynamic_pruning" / "tiny.yaml").write_text(base)
    (params / "lottery" / "tiny_imp.yaml").write_text(base + "method: imp\nimp_rate: 0.5\n")
    (params / "ticket" / "tiny.yaml").write_text(base + "method: ticket_check\nticket_from: dynamic_pruning/tiny\n")
    train_in_process(project, "dynamic_pruning/tiny")  # the masks the ticket check reads
    for target in ("lottery/tiny_imp", "ticket/tiny"):
        proc = render(project, f"results/paper/{target}.ipynb", project / "data")
        assert proc.returncode == 0, f"{target}: {proc.stderr[-3000:]}"
    out = project / "results" / "paper"
    for point, levels in (("final_sparsity=0.5", [0.0, 0.5]), ("final_sparsity=0.7", [0.0, 0.5, 0.7])):
        imp = json.loads((out / "lottery" / "tiny_imp" / point / "seed42" / "summary.json").read_text())
        assert [round(r["sparsity"], 4) for r in imp["levels"]] == levels
        ticket = json.loads((out / "ticket" / "tiny" / point / "seed42" / "summary.json").read_text())
        assert ticket["source_folder"].endswith(f"dynamic_pruning/tiny/{point}/seed42")
        assert ticket["sparsity"] == pytest.approx(float(point.split("=")[1]), abs=1e-4)


@pytest.mark.e2e
def test_a_kernel_that_dies_leaves_a_failed_notebook_and_one_line(project):
    notebooks = project / "notebooks"
    shutil.copytree(PROJECT / "notebooks", notebooks)
    source = (notebooks / "dynamic_pruning.py").read_text()
    marker = "# %%\noutcomes = run_experiment("
    assert marker in source
    (notebooks / "dynamic_pruning.py").write_text(source.replace(marker, "# %%\nimport os\nos._exit(9)\n\n" + marker))
    proc = render(project, "results/paper/dynamic_pruning/tiny.ipynb", project / "data",
                  {"DYNPRUNE_NOTEBOOKS": str(notebooks)})
    assert proc.returncode != 0
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("dynamic_pruning/tiny FAILED: ") and "kept in" in last, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    out = project / "results" / "paper" / "dynamic_pruning"
    assert (out / "tiny.failed.ipynb").is_file() and not (out / "tiny.running.ipynb").exists()
    assert not (out / "tiny.ipynb").exists()


def test_the_terminal_line_of_a_grid_gives_its_range_not_a_mean_over_points():
    from dynprune.pipeline.render import headline
    seeds = [dict(folder=f"r/x/seed{k}", test_accuracy=a, sparsity=0.8, action="reused", epochs=0)
             for k, a in ((1, 98.0), (2, 97.0))]
    assert headline(seeds) == "test accuracy 97.50 % (mean of 2 runs) at sparsity 0.8000; every run read from cache, 0 epochs"
    grid = [dict(folder=f"r/x/final_sparsity={s}/seed1", test_accuracy=a, sparsity=s, action="trained", epochs=15)
            for s, a in ((0.5, 98.4), (0.98, 97.7))]
    assert headline(grid) == ("test accuracy 97.70–98.40 % over 2 runs at 2 grid points, sparsity 0.5000–0.9800; "
                              "2 run(s) trained, 30 epochs")


def test_the_terminal_line_of_a_ticket_check_gives_each_variants_accuracy():
    from dynprune.pipeline.render import headline
    runs = [dict(folder=f"r/t/seed{k}", test_accuracy=None, sparsity=0.8, action="trained", epochs=12,
                 variants={"rewind_init": a, "reinit": b}) for k, a, b in ((1, 98.0, 97.0), (2, 97.0, 96.0))]
    assert headline(runs) == ("test accuracy rewind_init 97.50 %, reinit 96.50 % (means of 2 runs) at sparsity 0.8000; "
                              "2 run(s) trained, 24 epochs")
