"""The committed paper-profile record: RESULTS.md is exactly what `make results` writes from the committed run
folders, every link in RESULTS.md, the README and the report page names a committed file, and results/paper/
holds text records and rendered notebooks only — no weights, no machine's path, at most 30 MB."""
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from dynprune.config import PROJECT
from dynprune.report.results_md import headline_markdown, results_markdown

RECORD = PROJECT / "results" / "paper"
LINK = re.compile(r"\]\(([^)\s]+)\)|(?:href|src)=\"([^\"]+)\"")


def committed() -> set[str]:
    """Files git tracks (the record as a fresh clone has it); without .git, the files on disk."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True).stdout
        return set(out.decode().split("\0")) - {""}
    except (OSError, subprocess.CalledProcessError):
        return {str(p.relative_to(PROJECT)) for p in PROJECT.rglob("*") if p.is_file()}


def local_links(page: Path) -> list[str]:
    """Links of a page that point into the project (web addresses and anchors are not files)."""
    found = []
    for match in LINK.finditer(page.read_text(encoding="utf-8")):
        target = unquote((match.group(1) or match.group(2)).split("#")[0])
        if target and not re.match(r"^[a-z]+:", target):
            found.append(target)
    return found


def test_results_md_is_what_make_results_writes_from_the_committed_runs():
    assert (PROJECT / "RESULTS.md").read_text(encoding="utf-8") == results_markdown(PROJECT / "RESULTS.md", "paper")
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    assert f"<!-- headline:start -->\n{headline_markdown('paper')}\n<!-- headline:end -->" in readme


@pytest.mark.parametrize("page", ["RESULTS.md", "README.md", "results/paper/index.html"])
def test_every_link_names_a_committed_file(page):
    files = committed()
    if page not in files:
        pytest.fail(f"{page} is not committed")
    base = (PROJECT / page).parent
    broken = [t for t in local_links(PROJECT / page)
              if str((base / t).resolve().relative_to(PROJECT.resolve())) not in files
              and not any(f.startswith(str((base / t).resolve().relative_to(PROJECT.resolve())) + "/") for f in files)]
    assert not broken, f"{page} links to files that are not committed: {broken[:5]}"


def test_the_record_holds_no_weights_no_machine_path_and_fits_30_mb():
    files = [f for f in committed() if f.startswith("results/")]
    assert files, "no paper-profile record is committed under results/paper/"
    assert all(f.startswith("results/paper/") for f in files), [f for f in files if not f.startswith("results/paper/")]
    assert not [f for f in files if f.endswith((".safetensors", ".pt", ".pth", ".pkl", ".lock"))]
    assert sum((PROJECT / f).stat().st_size for f in files) <= 30 * 2**20
    machine_path = re.compile(rb"(?<![\w.])/(?:work|tmp|root|home|Users|scratch)/")
    leaking = [f for f in files if machine_path.search((PROJECT / f).read_bytes())]
    assert not leaking, f"files with an absolute path of the machine that made them: {leaking[:5]}"
