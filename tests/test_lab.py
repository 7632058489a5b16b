"""Saving a notebook from JupyterLab must leave notebooks/*.py as they are, byte for byte.

Every notebook is a jupytext percent script that `make` renders from; if a save from the lab rewrote
its header (jupytext's version, a metadata filter...), `make` would re-render every experiment of that
notebook. These tests drive a real `jupyter server` with jupytext's contents manager the way JupyterLab
does (GET the notebook, PUT it back) over a copy of notebooks/ and jupytext.toml, never the repository.
"""
import difflib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import PROJECT

pytest.importorskip("jupyter_server", reason="jupyter_server (see requirements.txt) is needed to serve the notebooks")

TOKEN = "dynprune-test-token"
NOTEBOOKS = sorted(p.name for p in (PROJECT / "notebooks").glob("*.py"))
OVERRIDES = re.compile(r"^overrides = \{\}")

pytestmark = pytest.mark.e2e


def diff(name: str, before: bytes, after: bytes) -> str:
    lines = difflib.unified_diff(before.decode().splitlines(keepends=True), after.decode().splitlines(keepends=True),
                                 f"{name} before", f"{name} after saving", n=1)
    return "".join(lines)[:2000]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running `jupyter server` over `root`, laid out like the project: root/jupytext.toml, root/notebooks/."""

    def __init__(self, root: Path, port: int, proc: subprocess.Popen, log: Path):
        self.root, self.url, self.proc, self.log = root, f"http://127.0.0.1:{port}", proc, log

    def request(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read())

    def open(self, name: str) -> dict:
        model = self.request("GET", f"/api/contents/notebooks/{name}?type=notebook&content=1")
        assert model["type"] == "notebook", f"{name} is served as {model['type']!r}, not as a notebook"
        return model["content"]

    def save(self, name: str, notebook: dict) -> None:
        """What JupyterLab sends when the user saves."""
        self.request("PUT", f"/api/contents/notebooks/{name}", {"type": "notebook", "format": "json", "content": notebook})

    def restore(self) -> None:
        """Fresh copies of the project's notebooks and jupytext config (a test may have saved over them)."""
        (self.root / "notebooks").mkdir(exist_ok=True)
        for name in NOTEBOOKS:
            shutil.copyfile(PROJECT / "notebooks" / name, self.root / "notebooks" / name)
        shutil.copyfile(PROJECT / "jupytext.toml", self.root / "jupytext.toml")

    def disk(self, name: str) -> bytes:
        return (self.root / "notebooks" / name).read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    root, home = base / "root", base / "jupyter"
    root.mkdir()
    port, log = free_port(), base / "server.log"
    # The user's own Jupyter config, data and runtime folders stay out of it; the environment's own
    # (sys.prefix/etc/jupyter, where jupytext enables itself as a server extension) is what `make lab` uses.
    env = os.environ | {"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
                        "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
           f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    lab = Lab(root, port, proc, log)
    lab.restore()
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                lab.request("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter server did not answer within 60 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        # jupytext's contents manager is active: the scripts are listed as notebooks, not as files.
        listing = lab.request("GET", "/api/contents/notebooks")
        kinds = {item["name"]: item["type"] for item in listing["content"]}
        assert all(kinds[name] == "notebook" for name in NOTEBOOKS), (
            f".py files are not served as notebooks (is jupytext's server extension enabled?): {kinds}")
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def lab(server):
    server.restore()
    return server


def test_saving_an_unchanged_notebook_leaves_the_script_byte_identical(lab):
    assert NOTEBOOKS, "no notebooks/*.py found"
    for name in NOTEBOOKS:
        before = lab.disk(name)
        lab.save(name, lab.open(name))
        assert lab.disk(name) == before, (f"saving {name} unchanged rewrote it (jupytext.toml writes no notebook "
                                          f"metadata, so a notebook has no YAML header):\n{diff(name, before, lab.disk(name))}")


def test_saving_after_a_run_leaves_the_script_byte_identical(lab):
    """What the lab adds once a kernel ran the cells (kernelspec, language_info, outputs, counts, timings) stays out."""
    for name in NOTEBOOKS:
        before = lab.disk(name)
        nb = lab.open(name)
        nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7", "mimetype": "text/x-python",
                                           "file_extension": ".py", "codemirror_mode": {"name": "ipython", "version": 3}}
        for count, cell in enumerate((c for c in nb["cells"] if c["cell_type"] == "code"), start=1):
            cell["execution_count"] = count
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "ran\n"}]
            cell["metadata"]["execution"] = {"iopub.status.busy": "2025-01-01T00:00:00.000Z",
                                             "shell.execute_reply": "2025-01-01T00:00:01.000Z"}
            cell["metadata"]["trusted"] = True
        lab.save(name, nb)
        assert lab.disk(name) == before, f"saving {name} after a run rewrote it:\n{diff(name, before, lab.disk(name))}"


def test_editing_the_parameters_cell_changes_only_that_line(lab):
    for name in NOTEBOOKS:
        before = lab.disk(name).decode().splitlines(keepends=True)
        nb = lab.open(name)
        cells = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(cells) == 1, f"{name} has {len(cells)} cells tagged 'parameters'"
        source = cells[0]["source"]
        lines = (source if isinstance(source, str) else "".join(source)).splitlines(keepends=True)
        hits = [i for i, line in enumerate(lines) if OVERRIDES.match(line)]
        assert len(hits) == 1, f"{name}: the parameters cell has no single `overrides = {{}}` line"
        lines[hits[0]] = OVERRIDES.sub('overrides = {"epochs": 3}', lines[hits[0]])
        cells[0]["source"] = "".join(lines)
        lab.save(name, nb)

        on_disk = lab.disk(name)
        after = on_disk.decode().splitlines(keepends=True)
        changed = [i for i, line in enumerate(before) if OVERRIDES.match(line)]
        assert len(changed) == 1, f"{name}: expected one `overrides = {{}}` line on disk"
        expected = list(before)
        expected[changed[0]] = OVERRIDES.sub('overrides = {"epochs": 3}', before[changed[0]])
        assert after == expected, (f"saving {name} changed more than its overrides line:\n"
                                   + diff(name, "".join(expected).encode(), on_disk))


def test_every_notebook_runs_from_its_lab_defaults_and_writes_only_under_results_lab(tmp_path):
    """What a user gets from 'run all' in JupyterLab without changing anything: a real kernel, the notebooks'
    own defaults (the quick profile), every result under results/lab/ and nothing else touched."""
    import os
    import sys
    import jupytext
    from nbclient import NotebookClient
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import PROJECT, make_mnist
    results = tmp_path / "results"
    data = make_mnist(tmp_path / "data", n_train=2000, n_test=500)  # the quick profile's subsets
    env = dict(DYNPRUNE_RESULTS=str(results), DYNPRUNE_DATA=str(data), DYNPRUNE_CACHE=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    before = {p for p in PROJECT.rglob("*") if ".venv" not in p.parts and "results" not in p.parts
              and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}
    try:
        for path in sorted((PROJECT / "notebooks").glob("*.py")):
            nb = jupytext.read(path)
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            NotebookClient(nb, kernel_name="python3", timeout=600, shutdown_kernel="immediate",
                           resources={"metadata": {"path": str(PROJECT / "notebooks")}}).execute()
            errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    written = {p.relative_to(results).parts[0] for p in results.rglob("*") if p.is_file()}
    assert written == {"lab"}, f"a lab run wrote outside results/lab/: {written}"
    assert {p.name for p in (results / "lab" / "quick").iterdir()} >= {"dynamic_pruning", "lottery", "ticket", "compare",
                                                                       "report"}
    assert (results / "lab" / "quick" / "report" / "summary" / "index.html").is_file()
    after = {p for p in PROJECT.rglob("*") if ".venv" not in p.parts and "results" not in p.parts
             and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}
    assert after == before, f"the project changed: {sorted(map(str, after ^ before))[:5]}"
