"""Render one experiment notebook headlessly: what `make experiments` does for every parameter file.

    <root>/results/<profile>/<notebook>/<name>.ipynb
        <-  notebooks/<notebook>.py  +  <root>/params/<notebook>/<name>.yaml  +  <root>/params/profiles/<profile>.yaml

The parameters are validated before a kernel starts. Every variable of the notebook's parameters cell is
injected (a value saved there from JupyterLab never leaks into a batch run). While running, the notebook is
written to `<name>.running.ipynb` under a lock (a second render of the same target stops with one line);
only a run that finished becomes `<name>.ipynb` (+ `<name>.html`); a failed one is kept as
`<name>.failed.ipynb` with its one-line reason. The terminal gets one line when a notebook starts and one
when it ends; the cells' output and the kernel's chatter go to results/<profile>/logs/<notebook>/<name>.log.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import config as C
from .store import Busy, locked, write_atomic

PROJECT = C.PROJECT


def results_root() -> Path:
    """Where results live: DYNPRUNE_RESULTS, else this project's results/."""
    return Path(os.environ.get("DYNPRUNE_RESULTS") or PROJECT / "results")


def batch_results(profile: str) -> Path:
    """The batch results of a profile (what notebooks started from JupyterLab read, never write)."""
    return results_root() / profile


def notebooks_dir() -> Path:
    """The notebooks rendered: DYNPRUNE_NOTEBOOKS (a copy, e.g. in a test), else this project's notebooks/."""
    return Path(os.environ.get("DYNPRUNE_NOTEBOOKS") or PROJECT / "notebooks")


def params_file(experiment: str) -> Path:
    """An experiment is a key under params/ ('dynamic_pruning/mnist_val') or a path to a YAML file."""
    return Path(experiment) if experiment.endswith(".yaml") else PROJECT / "params" / f"{experiment}.yaml"


def lab_run_dir(kind: str, profile: str, name: str) -> Path:
    """Where a notebook run from JupyterLab writes: results/lab/, apart from every batch result."""
    return results_root() / "lab" / profile / kind / name


def parse_target(target: Path) -> tuple[Path, str, str, str]:
    """<root>/results/<profile>/<notebook>/<name>.ipynb -> (root, profile, notebook, name), every part checked."""
    target = Path(target).absolute()
    parts = target.parts
    if len(parts) < 5 or parts[-4] != "results" or target.suffix != ".ipynb" or parts[-2] not in C.NOTEBOOKS:
        raise C.ConfigError(f"notebook target {target} is not of the form results/<profile>/<notebook>/<name>.ipynb "
                            f"(notebooks: {', '.join(C.NOTEBOOKS)})")
    C.check_name(parts[-3], "profile")
    C.check_name(target.stem, "experiment name")
    return target.parents[3], parts[-3], parts[-2], target.stem


def parameter_names(nb) -> list[str]:
    """The variables the notebook's parameters cell assigns."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise C.ConfigError("the notebook needs exactly one cell tagged 'parameters'")
    return [t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


def batch_parameters(nb, experiment: str, profile: str, run_dir: Path, inputs_dir: Path) -> dict:
    """A value for every variable of the parameters cell: whatever was saved there never reaches a batch run."""
    known = dict(experiment=experiment, profile=profile, run_dir=str(run_dir), inputs_dir=str(inputs_dir), overrides={})
    names = parameter_names(nb)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise C.ConfigError(f"the parameters cell assigns {unknown}, which a batch run has no value for; "
                            f"move them out of the parameters cell (or give them a batch value in runner.batch_parameters)")
    return {n: known[n] for n in names}


# -- the log a person reads -----------------------------------------------------------------------------

def _progress() -> tuple[int | None, int | None]:
    """(k, N) inside a `make experiments` session (session.py), else (None, None)."""
    session = os.environ.get("DYNPRUNE_SESSION")
    if not session:
        return None, None
    counter = Path(session) / "started"
    with locked(Path(session) / "counter.lock", "the session counter", wait=True):
        k = int(counter.read_text() or 0) + 1 if counter.is_file() else 1
        counter.write_text(str(k))
    total = json.loads((Path(session) / "session.json").read_text())["planned"]
    return k, total


def _say(k, total, text: str) -> None:
    prefix = f"[{k}/{total}] " if k is not None else ""
    print(f"{prefix}{text}", flush=True)


def _elapsed(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def headline(events: list[dict]) -> str:
    """'97.92 % at sparsity 0.789 (3 runs trained, 40 epochs)' from the runs a notebook went through."""
    if not events:
        return "read finished runs only"
    acc = [e["test_accuracy"] for e in events if e.get("test_accuracy") is not None]
    sparsity = [e["sparsity"] for e in events if e.get("sparsity") is not None]
    trained = [e for e in events if e["action"] != "reused"]
    epochs = sum(e["epochs"] for e in events)
    points = {Path(e["folder"]).parent for e in events if e.get("folder")}
    if len(points) > 1:  # a grid: a mean over its points would mean nothing (the notebook has each point)
        text = (f"test accuracy {min(acc):.2f}–{max(acc):.2f} %" if acc else "no accuracy") \
            + f" over {len(events)} runs at {len(points)} grid points" \
            + (f", sparsity {min(sparsity):.4f}" + (f"–{max(sparsity):.4f}" if max(sparsity) > min(sparsity) else "")
               if sparsity else "")
    elif any(e.get("variants") for e in events):  # a ticket check: one accuracy per way of training the mask
        names = list(next(e["variants"] for e in events if e.get("variants")))
        means = {v: [e["variants"][v] for e in events if (e.get("variants") or {}).get(v) is not None] for v in names}
        text = "test accuracy " + ", ".join(f"{v} {sum(a) / len(a):.2f} %" for v, a in means.items() if a) \
            + (f" (means of {len(events)} runs)" if len(events) > 1 else "")
    else:
        text = f"test accuracy {sum(acc) / len(acc):.2f} %" + (f" (mean of {len(acc)} runs)" if len(acc) > 1 else "") \
            if acc else "no accuracy"
    if len(points) <= 1 and sparsity:
        text += f" at sparsity {sparsity[0]:.4f}"
    text += f"; {len(trained)} run(s) trained, {epochs} epochs" if trained else "; every run read from cache, 0 epochs"
    return text


def _one_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    first = next((line for line in str(evalue).splitlines() if line.strip()), "")
    return f"{ename}: {first}"[:400]


@contextlib.contextmanager
def _output_to(log_path: Path):
    """Send this process's stdout and stderr (and so the kernel's, which inherits them) to the log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _record(outcome: dict) -> None:
    session = os.environ.get("DYNPRUNE_SESSION")
    if session:
        write_atomic(Path(session) / "outcomes" / f"{outcome['notebook'].replace('/', '__')}.json", json.dumps(outcome))


# -- rendering --------------------------------------------------------------------------------------------

def run_notebook(target: Path, launch: str = "local") -> None:
    root, profile, kind, name = parse_target(target)
    target = Path(target).absolute()
    key = f"{kind}/{name}"
    results = target.parents[1]
    log_path = results / "logs" / kind / f"{name}.log"
    events_path = results / "logs" / kind / f"{name}.events.jsonl"
    k, total = _progress()
    started = time.time()
    _say(k, total, f"{key} ({profile}) ...")
    outcome = dict(notebook=key, status="failed", seconds=0.0, epochs=0, trained=0, reused=0, reason="")
    try:
        experiment = root / "params" / kind / f"{name}.yaml"
        C.resolve(experiment, profile)  # refuse bad parameters before any kernel starts
        held_outside = os.environ.get("DYNPRUNE_NOTEBOOK_LOCK_HELD")  # a Slurm job whose submitter holds it
        with contextlib.nullcontext() if held_outside else locked(results / ".make" / "locks" / kind / f"{name}.lock",
                                                                  f"notebook {target}"):
            events_path.parent.mkdir(parents=True, exist_ok=True)
            events_path.write_text("")
            if launch == "slurm":
                _render_on_slurm(target, root, profile, kind, name, log_path)
            else:
                _render(target, root, profile, kind, name, experiment, log_path, events_path)
        events = [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()]
        outcome |= dict(status="rendered", epochs=sum(e["epochs"] for e in events),
                        trained=sum(e["action"] != "reused" for e in events),
                        reused=sum(e["action"] == "reused" for e in events), headline=headline(events))
        _say(k, total, f"{key} done in {_elapsed(time.time() - started)}: {outcome['headline']}")
    except (C.ConfigError, Busy, RenderError) as e:
        outcome["reason"] = str(e)
        _say(k, total, f"{key} FAILED: {e}")
        raise SystemExit(1) from None
    finally:
        outcome["seconds"] = time.time() - started
        _record(outcome)


class RenderError(RuntimeError):
    """A notebook that did not finish, worded as one line naming where it is kept."""


def _render(target: Path, root: Path, profile: str, kind: str, name: str, experiment: Path, log_path: Path,
            events_path: Path) -> None:
    import jupytext
    import papermill

    source = notebooks_dir() / f"{kind}.py"
    running, failed, html = target.with_suffix(".running.ipynb"), target.with_suffix(".failed.ipynb"), target.with_suffix(".html")
    failed.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    parameters = batch_parameters(nb, str(experiment), profile, target.with_suffix(""), target.parents[1])
    env = dict(DYNPRUNE_EVENTS=str(events_path), PYTHONWARNINGS="ignore")
    with _output_to(log_path) as log, _environment(env), _device_slot(target, root, profile, kind, name, log):
        print(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} rendering {target}"
              + (" (forked from a warm render server)" if _warm else ""), flush=True)
        try:
            papermill.execute_notebook(nb, str(running), parameters=parameters, kernel_name="python3",
                                       progress_bar=False, cwd=str(notebooks_dir()), log_output=False,
                                       shutdown_kernel="immediate",  # a graceful shutdown waits seconds for nothing
                                       stdout_file=log, stderr_file=log)
        except Exception as e:  # a failing cell, a dead kernel, a timeout: all end the same way
            if running.is_file():
                os.replace(running, failed)
            print(f"FAILED: {_one_line(e)}", flush=True)
            raise RenderError(f"{_one_line(e)}; the notebook is kept in {failed}, the full log in {log_path}") from None
    _drop_default_parameters(running)
    body, _ = html_exporter().from_filename(str(running))
    write_atomic(html, body)
    os.replace(running, target)  # last: the .ipynb is what make takes as done


@functools.cache
def html_exporter():
    import nbconvert
    return nbconvert.HTMLExporter()


_warm = False


def warm_up() -> None:
    """Load what every render loads before its own work, and export one small notebook (which compiles the
    templates and the regular expressions of the first export): done once by renderserver.py."""
    global _warm
    import jupytext  # noqa: F401
    import papermill  # noqa: F401
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    outputs = [new_output("stream", name="stdout", text="text\n"),
               new_output("display_data", data={"text/markdown": "| a | b |\n|---|---|\n| 1 | 2 |",
                                                "text/html": "<table><tr><td>1</td></tr></table>",
                                                "image/png": png, "text/plain": "figure"})]
    nb = new_notebook(cells=[new_markdown_cell("# Title\nSome *text*, `code` and a [link](https://example.org)."),
                             new_code_cell("from pathlib import Path\nx = {'a': 1.0}  # comment", execution_count=1,
                                           outputs=outputs)],
                      metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}})
    html_exporter().from_notebook_node(nb)
    _warm = True


def _drop_default_parameters(path: Path) -> None:
    """The rendered notebook shows the values it ran with (papermill's injected cell), not the lab defaults."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "parameters" not in c.metadata.get("tags", [])]
    nbformat.write(nb, path)


@contextlib.contextmanager
def _environment(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- devices: one notebook per GPU ------------------------------------------------------------------------

def device_slots() -> list[str]:
    """The devices notebooks are spread over: DYNPRUNE_DEVICE_SLOTS ('0,1,3', or a count), else every GPU
    nvidia-smi lists; empty without GPUs (then nothing changes)."""
    spec = os.environ.get("DYNPRUNE_DEVICE_SLOTS", "").strip()
    if spec:
        return [str(i) for i in range(int(spec))] if spec.isdigit() else [s.strip() for s in spec.split(",") if s.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


@contextlib.contextmanager
def _device_slot(target: Path, root: Path, profile: str, kind: str, name: str, log):
    """Hold as many device slots as the notebook's runs use processes (one without distribution), exclusively,
    for the whole render; a notebook that finds them all busy waits. The kernel sees only its devices."""
    slots = device_slots()
    if not slots:
        yield
        return
    try:
        cfg = C.resolve(root / "params" / kind / f"{name}.yaml", profile)
        need = max(r.cfg.processes for r in C.runs_of(cfg)) if kind not in C.SCHEMAS else 1
    except C.ConfigError:
        need = 1
    need = min(need, len(slots))
    lock_dir = root / "results" / ".slots"
    with contextlib.ExitStack() as held:
        mine: list[str] = []
        while len(mine) < need:
            for slot in slots:
                if slot in mine:
                    continue
                try:
                    held.enter_context(locked(lock_dir / f"slot-{slot}.lock", f"device slot {slot}"))
                    mine.append(slot)
                    if len(mine) == need:
                        break
                except Busy:
                    continue
            if len(mine) < need:
                time.sleep(0.5)
        print(f"device slot(s) {','.join(mine)} held from {time.time():.3f}", file=log, flush=True)
        try:
            with _environment({"CUDA_VISIBLE_DEVICES": ",".join(mine), "DYNPRUNE_DEVICE_SLOT": ",".join(mine)}):
                yield
        finally:
            print(f"device slot(s) {','.join(mine)} released at {time.time():.3f}", file=log, flush=True)


def _render_on_slurm(target: Path, root: Path, profile: str, kind: str, name: str, log_path: Path) -> None:
    """The same render, as a Slurm job (sbatch --wait): make keeps the order, Slurm places the job."""
    from . import slurm
    resources = C.resources(root / "params" / kind / f"{name}.yaml", profile)
    command = [sys.executable, "-m", "dynprune", "notebook", str(target)]
    env = {k: v for k, v in os.environ.items() if k != "DYNPRUNE_SESSION"} | {"DYNPRUNE_NOTEBOOK_LOCK_HELD": "1"}
    try:
        code = slurm.submit_and_wait(command, job_name=f"dynprune:{profile}/{kind}/{name}",
                                     log=log_path.with_suffix(".slurm.log"), cwd=root, resources=resources, env=env)
    except slurm.SlurmError as e:
        raise RenderError(str(e)) from None
    if code != 0 or not target.is_file():
        raise RenderError(f"the Slurm job ended with exit code {code}; its log is {log_path.with_suffix('.slurm.log')}")
