"""Which code decides a run's numbers: every module of dynprune.core and dynprune.lottery, by its syntax tree.
Tested on a copy of the package, against a run trained by the real one."""
import shutil

import pytest

from dynprune.config import runs_of
from dynprune.runs import identity, lifecycle, state
from dynprune.runs.paths import RunFolder

from conftest import PROJECT, tiny_config


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of dynprune/ that the fingerprint reads instead of the real one."""
    copy = tmp_path / "dynprune"
    shutil.copytree(PROJECT / "dynprune", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(identity, "PACKAGE", copy)
    identity.training_code.cache_clear()
    identity.sparse_code.cache_clear()
    yield copy
    identity.training_code.cache_clear()
    identity.sparse_code.cache_clear()


def edited(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_comments_and_docstrings_never_change_the_fingerprint_code_does(package):
    before = identity.training_code()
    edited(package / "core" / "masks.py", "class Masks:\n", "class Masks:  # a comment\n    '''A new docstring.'''\n")
    edited(package / "core" / "masks.py", "import fnmatch\n", "import fnmatch  # why: patterns\n\n\n")
    identity.training_code.cache_clear()
    assert identity.training_code() == before
    (package / "core" / "notes.py").write_text('"""Only words."""\n# and a comment\n')  # no code: nothing counts
    identity.training_code.cache_clear()
    assert identity.training_code() == before
    edited(package / "core" / "masks.py", "sparsity=zeros / m.numel()", "sparsity=zeros / max(1, m.numel())")
    identity.training_code.cache_clear()
    assert identity.training_code() != before


def test_presentation_and_kernels_are_not_training_code_but_kernels_have_their_own(package):
    before, kernels = identity.training_code(), identity.sparse_code()
    edited(package / "report" / "figures.py", 'title="accuracy")', 'title="accuracy per epoch")')
    edited(package / "sparse" / "kernels.py", "NOISE = 0.05", "NOISE = 0.06")
    identity.training_code.cache_clear()
    identity.sparse_code.cache_clear()
    assert identity.training_code() == before and identity.sparse_code() != kernels


def test_a_finished_run_stays_reusable_after_a_comment_edit_and_goes_stale_with_a_new_core_module(
        package, tmp_path, mnist_root):
    cfg = tiny_config(epochs=2)
    run = runs_of(cfg)[0]
    folder = tmp_path / "runs" / run.folder
    identity.training_code.cache_clear()
    lifecycle.ensure(run, folder, "paper", root=tmp_path / "runs", log=lambda _: None)

    def status():
        identity.training_code.cache_clear()
        return state.status(RunFolder(folder), state.run_identity(run.cfg))
    assert status() == "done"
    edited(package / "core" / "threshold.py", "def _select(", "# every comment may change\ndef _select(")
    assert status() == "done"
    (package / "core" / "criterion.py").write_text("def score(w):\n    return w.abs()\n")
    assert status() == "stale"
