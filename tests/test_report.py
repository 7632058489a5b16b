"""The report reads finished run folders, shows missing runs as missing, and renders as a page on disk."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dynprune.records import HISTORY_COLUMNS, csv_text

from conftest import PROJECT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def fake_run(results: Path, experiment: str, seed: int, accuracy: float, sparsity: float, point: str = ""):
    """A finished run folder as the notebooks write it (the report only reads these files)."""
    folder = results / experiment / point / f"seed{seed}"
    folder.mkdir(parents=True)
    history = [dict(epoch=e, target_sparsity=sparsity, sparsity=sparsity, lr=0.1, train_loss=1.0,
                    train_accuracy=50 + 10 * e, val_loss=1.0, val_accuracy=45 + 10 * e, seconds=1.0,
                    train_flops=1e9, train_flops_sparse=5e8) for e in (1, 2, 3)]
    (folder / "history.csv").write_text(csv_text(history, HISTORY_COLUMNS))
    (folder / "layers.csv").write_text(csv_text([dict(layer="fc.weight", shape=[10, 4], weights=40, zeros=32,
                                                      sparsity=0.8)], ["layer", "shape", "weights", "zeros", "sparsity"]))
    (folder / "summary.json").write_text(json.dumps(dict(
        test_accuracy=accuracy, sparsity=sparsity, target_sparsity=sparsity, train_seconds=12.0,
        hardware="test CPU", device="cpu", seed=seed)))
    for suffix in (".ipynb", ".html"):
        (results / f"{experiment}{suffix}").write_text("{}")


@pytest.fixture
def rendered(tmp_path):
    shutil.copytree(PROJECT / "params", tmp_path / "params")
    results = tmp_path / "results" / "quick"
    fake_run(results, "dynamic_pruning/mnist_val", 42, 91.0, 0.8)
    fake_run(results, "dynamic_pruning/resnet18_s80", 42, 30.5, 0.8)
    fake_run(results, "dynamic_pruning/resnet18_dense", 42, 33.0, 0.0)
    fake_run(results, "dynamic_pruning/cifar10_lr0.01", 42, 20.0, 0.8)  # no notebook: not finished
    (results / "dynamic_pruning" / "cifar10_lr0.01.ipynb").unlink()
    for seed, accuracy in ((42, 97.0), (123, 96.0), (456, 98.0)):  # a grid: two of its points, the rest missing
        fake_run(results, "dynamic_pruning/lenet_mnist_sweep", seed, accuracy, 0.9, "final_sparsity=0.9")
    fake_run(results, "dynamic_pruning/lenet_mnist_sweep", 42, 98.5, 0.0, "final_sparsity=0")
    proc = subprocess.run([sys.executable, "-m", "dynprune", "notebook", str(results / "report" / "summary.ipynb")],
                          capture_output=True, text=True, timeout=300, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


def test_report_shows_ours_beside_the_seeds_number_and_missing_as_missing(rendered):
    page = (rendered / "index.html").read_text()
    row = re.search(r"<tr>\s*<td>mnist_val</td>.*?</tr>", page, re.S).group(0)
    assert "99.49" in row and "91.00 (n=1)" in row and "quick" in row and "test CPU" in row
    row = re.search(r"<tr>\s*<td>cifar10_lr0.01</td>.*?</tr>", page, re.S).group(0)
    assert "missing" in row and "20.00" not in row  # a run without its rendered notebook did not finish
    row = re.search(r"<tr>\s*<td>lenet_mnist_sweep \[final_sparsity=0.9\]</td>.*?</tr>", page, re.S).group(0)
    assert "97.00 ± 1.00 (n=3)" in row
    row = re.search(r"<tr>\s*<td>lenet_mnist_sweep \[final_sparsity=0\]</td>.*?</tr>", page, re.S).group(0)
    assert "98.50 (n=1), 2 seed(s) missing" in row
    row = re.search(r"<tr>\s*<td>lenet_mnist_sweep \[final_sparsity=0.5\]</td>.*?</tr>", page, re.S).group(0)
    assert "missing" in row
    from dynprune.report import sweep_series
    series = sweep_series(rendered, rendered.parent.parent / "params")
    assert sorted(series["lenet_mnist_sweep"]) == [(0.0, 98.5, 0.0, 1), (0.9, 97.0, 1.0, 3)]
    assert sorted(series["ResNet-18 / CIFAR-10 (the later paper's sweep)"]) == [(0.0, 33.0, 0.0, 1), (0.8, 30.5, 0.0, 1)]
    assert (rendered / "report" / "summary" / "sparsity_sweep.png").is_file()
    assert (rendered / "report" / "summary" / "studies.png").is_file()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_index_page_renders_in_headless_chromium_with_working_links_and_figures(rendered, tmp_path):
    url = (rendered / "index.html").as_uri()
    shot = tmp_path / "index.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2000",
                    f"--screenshot={shot}", url], capture_output=True, timeout=120)
    from PIL import Image
    image = Image.open(shot).convert("L")
    assert len(image.getcolors(maxcolors=1 << 16)) > 20, "the page rendered blank"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    assert "dynprune results: quick profile" in dom
    links = re.findall(r'href="([^"]+)"', dom)
    assert any(link.startswith("dynamic_pruning/") for link in links)
    for link in links:
        assert (rendered / link).is_file(), f"broken link {link}"
    images = re.findall(r"<img[^>]*>", dom)
    assert len(images) == 2
    for img in images:
        assert 'data-loaded="true"' in img, f"figure did not load: {img}"
