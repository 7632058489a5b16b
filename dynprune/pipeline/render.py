"""Render one experiment notebook headlessly: what `make experiments` does for every parameter file.

    <root>/results/<profile>/<notebook>/<name>.ipynb
        <-  notebooks/<notebook>.py  +  <root>/params/<notebook>/<name>.yaml  +  <root>/params/profiles/<profile>.yaml

The parameters are validated before a kernel starts. The notebook's parameters cell may hold literal
assignments only, and every one of its variables is injected (a value saved there from JupyterLab never leaks
into a batch run). While running, the notebook is written to `<name>.running.ipynb` under a lock (a second
render of the same target stops with one line); only a run that finished becomes `<name>.ipynb` (+ `.html`); a
failed one is kept as `<name>.failed.ipynb` with its one-line reason. The terminal gets one line when a
notebook starts and one when it ends; the cells' output and the kernel's chatter go to its log.
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

from dynprune import config as C
from dynprune.foundations.storage import Busy, StoreError, locked, no_links, open_for_append, write_atomic
from dynprune.pipeline import slurm
from dynprune.runs.paths import Rendered


class RenderError(RuntimeError):
    """A notebook that did not finish, worded as one line naming where it is kept."""


def notebooks_dir() -> Path:
    """The notebooks rendered: DYNPRUNE_NOTEBOOKS (a copy, e.g. in a test), else this project's notebooks/."""
    return Path(os.environ.get("DYNPRUNE_NOTEBOOKS") or C.PROJECT / "notebooks")


def parse_target(target: Path) -> tuple[Path, Rendered]:
    """<root>/results/<profile>/<notebook>/<name>.ipynb -> (root, the experiment's files), every part checked."""
    target = Path(target).absolute()
    parts = target.parts
    if len(parts) < 5 or parts[-4] != "results" or target.suffix != ".ipynb" or parts[-2] not in C.NOTEBOOKS:
        raise C.ConfigError(f"notebook target {target} is not of the form results/<profile>/<notebook>/<name>.ipynb "
                            f"(notebooks: {', '.join(C.NOTEBOOKS)})")
    C.check_name(parts[-3], "profile")
    C.check_name(target.stem, "experiment name")
    return target.parents[3], Rendered(target.parents[1], parts[-2], target.stem)


def parameter_names(nb, source: Path) -> list[str]:
    """The variables the notebook's parameters cell assigns. It may hold `name = <literal>` and nothing else: a
    batch render replaces it, and code there would run in the lab only, or (before the batch values) in batch."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise C.ConfigError(f"{source}: the notebook needs exactly one cell tagged 'parameters'")
    try:
        body = ast.parse(cells[0].source).body
    except SyntaxError as e:
        raise C.ConfigError(f"{source}: the parameters cell is not valid Python ({e.msg}, its line {e.lineno})") from None
    names = []
    for node in body:
        try:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                raise ValueError
            ast.literal_eval(node.value)
        except ValueError:
            raise C.ConfigError(f"{source}: line {node.lineno} of the parameters cell is not `name = <literal>` "
                                f"({ast.get_source_segment(cells[0].source, node)[:60]!r}); move code out of the "
                                f"parameters cell") from None
        names.append(node.targets[0].id)
    return names


def check_syntax(nb, source: Path) -> None:
    """Every code cell parses: a syntax error names the notebook file and cell, before a kernel starts."""
    for number, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())
        try:
            ast.parse(code)
        except SyntaxError as e:
            raise C.ConfigError(f"{source}: code cell {number} has a syntax error ({e.msg}, its line {e.lineno}); "
                                f"fix the notebook") from None


def batch_parameters(nb, source: Path, experiment: Path, profile: str, rendered: Rendered) -> dict:
    """A value for every variable of the parameters cell, paths relative to the notebooks' folder (where the
    kernel runs), so that a rendered notebook shows no path of the machine that rendered it."""
    here = notebooks_dir()
    known = dict(experiment=os.path.relpath(experiment, here), profile=profile,
                 run_dir=os.path.relpath(rendered.runs, here), inputs_dir=os.path.relpath(rendered.results, here),
                 overrides={})
    names = parameter_names(nb, source)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise C.ConfigError(f"{source}: the parameters cell assigns {unknown}, which a batch run has no value for; "
                            f"move them out of the parameters cell (or give them a batch value in render.batch_parameters)")
    return {n: known[n] for n in names}


# -- the log a person reads -----------------------------------------------------------------------------

def elapsed(seconds: float) -> str:
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
    with open_for_append(log_path) as log:
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


# -- rendering --------------------------------------------------------------------------------------------

def run_notebook(target: Path, launch: str = "local", progress: str = "", submitted: bool = False) -> dict:
    """Render one notebook; its outcome (status, seconds, epochs, runs trained and reused, headline or reason).
    `progress` prefixes its two terminal lines ('[3/54] '); `submitted`: this is the Slurm job of a render whose
    submitter holds the notebook's lock."""
    root, rendered = parse_target(target)
    profile = rendered.results.name
    started = time.time()
    print(f"{progress}{rendered.key} ({profile}) ...", flush=True)
    outcome = dict(notebook=rendered.key, status="failed", seconds=0.0, epochs=0, trained=0, reused=0, reason="")
    try:
        for path in (rendered.notebook, rendered.html, rendered.running, rendered.failed, rendered.runs, rendered.log,
                     rendered.events, rendered.slurm_log, rendered.lock):  # every file this render writes
            no_links(path, root / "results")
        experiment = root / "params" / rendered.kind / f"{rendered.name}.yaml"
        C.resolve(experiment, profile)  # refuse bad parameters before any kernel starts
        with contextlib.nullcontext() if submitted else locked(rendered.lock, f"notebook {rendered.notebook}"):
            write_atomic(rendered.events, "")
            if launch == "slurm":
                _render_on_slurm(root, rendered)
            else:
                _render(root, rendered, experiment)
        events = [json.loads(line) for line in rendered.events.read_text().splitlines() if line.strip()]
        outcome |= dict(status="rendered", epochs=sum(e["epochs"] for e in events),
                        trained=sum(e["action"] != "reused" for e in events),
                        reused=sum(e["action"] == "reused" for e in events), headline=headline(events))
        print(f"{progress}{rendered.key} done in {elapsed(time.time() - started)}: {outcome['headline']}", flush=True)
    except (C.ConfigError, Busy, StoreError, RenderError) as e:
        outcome["reason"] = str(e)
        print(f"{progress}{rendered.key} FAILED: {e}", flush=True)
    outcome["seconds"] = time.time() - started
    return outcome


def _render(root: Path, rendered: Rendered, experiment: Path) -> None:
    import jupytext  # the rendering machinery (1 s of imports): schedule.py loads it once, before it forks
    import papermill

    source = notebooks_dir() / f"{rendered.kind}.py"
    rendered.failed.unlink(missing_ok=True)
    rendered.notebook.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    parameters = batch_parameters(nb, source, experiment, rendered.results.name, rendered)
    check_syntax(nb, source)
    env = dict(DYNPRUNE_EVENTS=str(rendered.events), PYTHONWARNINGS="ignore")
    with _output_to(rendered.log) as log, _environment(env), _device_slot(root, rendered, log):
        print(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} rendering {rendered.key}", flush=True)
        try:
            papermill.execute_notebook(nb, str(rendered.running), parameters=parameters, kernel_name="python3",
                                       progress_bar=False, cwd=str(notebooks_dir()), log_output=False,
                                       shutdown_kernel="immediate",  # a graceful shutdown waits seconds for nothing
                                       stdout_file=log, stderr_file=log)
        except Exception as e:  # a failing cell, a dead kernel, a timeout: all end the same way
            if rendered.running.is_file():
                os.replace(rendered.running, rendered.failed)
            print(f"FAILED: {_one_line(e)}", flush=True)
            raise RenderError(f"{_one_line(e)}; the notebook is kept in {rendered.failed}, the full log in "
                              f"{rendered.log}") from None
    _tidy(rendered.running)
    body, _ = html_exporter().from_filename(str(rendered.running))
    write_atomic(rendered.html, body)
    os.replace(rendered.running, rendered.notebook)  # last: the .ipynb is what says 'rendered'


@functools.cache
def html_exporter():
    import nbconvert  # with papermill and jupytext: loaded once by the scheduler before it forks the renders
    return nbconvert.HTMLExporter()


def _tidy(path: Path) -> None:
    """The rendered notebook shows the values it ran with (papermill's injected cell), not the lab defaults, and
    no path of the machine that rendered it (papermill records where it read and wrote the notebook)."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "parameters" not in c.metadata.get("tags", [])]
    for key in ("input_path", "output_path"):
        nb.metadata.get("papermill", {}).pop(key, None)
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
def _device_slot(root: Path, rendered: Rendered, log):
    """Hold as many device slots as the notebook's runs use processes (one without distribution), exclusively,
    for the whole render; a notebook that finds them all busy waits. The kernel sees only its devices."""
    slots = device_slots()
    if not slots:
        yield
        return
    try:
        cfg = C.resolve(root / "params" / rendered.kind / f"{rendered.name}.yaml", rendered.results.name)
        need = max(r.cfg.processes for r in C.runs_of(cfg)) if rendered.kind not in C.SCHEMAS else 1
    except C.ConfigError:
        need = 1
    need = min(need, len(slots))
    with contextlib.ExitStack() as held:
        mine: list[str] = []
        while len(mine) < need:
            for slot in slots:
                if slot in mine:
                    continue
                try:
                    held.enter_context(locked(rendered.results.parent / ".slots" / f"slot-{slot}.lock",
                                              f"device slot {slot}"))
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


def _render_on_slurm(root: Path, rendered: Rendered) -> None:
    """The same render, as a Slurm job (sbatch --wait): the scheduler keeps the order, Slurm places the job."""
    resources = C.resources(root / "params" / rendered.kind / f"{rendered.name}.yaml", rendered.results.name)
    command = [sys.executable, "-m", "dynprune", "notebook", "--submitted", str(rendered.notebook)]
    try:
        code = slurm.submit_and_wait(command, job_name=f"dynprune:{rendered.results.name}/{rendered.key}",
                                     log=rendered.slurm_log, cwd=root, resources=resources)
    except slurm.SlurmError as e:
        raise RenderError(str(e)) from None
    if code != 0 or not rendered.notebook.is_file():
        raise RenderError(f"the Slurm job ended with exit code {code}; its log is {rendered.slurm_log}")
