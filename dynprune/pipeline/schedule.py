"""`make experiments`: render every experiment that changed, in dependency order, with a log a person reads.

This is the one scheduler; the Makefile's targets call it. Every parameter file params/<notebook>/<name>.yaml is
one node; a ticket check reads its dynamic-pruning experiment, a comparison its inputs, the report all others.
A node is rendered again when the stamp of what it is made from — its resolved parameters, its notebook's code
cells, the library's code that shows through it, the claims file, the stamps of what it reads — differs from the
stamp its last render left (results/<profile>/.pipeline/stamps/); which runs then train is decided per run by
identity (runs/state.py), so a render after a presentation change only reads finished runs.

Each render is a process of its own (its failure or crash touches no other), forked from this one after it has
loaded the rendering machinery once (papermill, nbconvert, jupytext and a first HTML export: about 2 s of CPU a
render would otherwise pay). At most `jobs` renders run at once; a render whose input failed is not started;
every one prints its start and end lines, and the session ends with one summary. Ctrl-C stops every render and
leaves the interrupted notebooks as .running.ipynb.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dynprune import config as C
from dynprune.analysis.results import LEARNS, below_chance, collect
from dynprune.config.claims_file import claims_path
from dynprune.foundations.storage import no_links, write_atomic
from dynprune.pipeline import render
from dynprune.runs.identity import code_fingerprint, training_code
from dynprune.runs.paths import Rendered

# Run order within the graph's freedom: the longest first, so that short ones fill the cores at the end.
ORDER = ("lottery", "dynamic_pruning", "ticket", "compare", "report")
# The code a rendered notebook shows through: everything but the command line, the scheduler and the tools.
PRESENTATION = ("foundations", "config", "core", "lottery", "runs", "sparse", "analysis", "report", "pipeline/render.py")


@dataclass
class Node:
    kind: str
    name: str
    path: Path
    inputs: list[str] = field(default_factory=list)
    made_from: dict = field(default_factory=dict)   # what the stamp hashes, before the inputs' stamps
    stamp: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


def notebook_code(path: Path) -> str:
    """The notebook's code and text without its parameters cell: what a render depends on."""
    import jupytext
    cells = [c.source for c in jupytext.read(path).cells if "parameters" not in c.metadata.get("tags", [])]
    return hashlib.sha256("\n\0".join(cells).encode()).hexdigest()


def graph(root: Path, profile: str) -> tuple[dict[str, Node], list[str]]:
    """(every experiment of root/params in run order, with its inputs and stamp; a line for each parameter file
    whose name cannot be a notebook's). A file that does not resolve is a node too: its render fails in one line
    and nothing else waits for it."""
    C.check_name(profile, "profile")
    C.read_profile(profile, root / "params")
    notebooks = {kind: notebook_code(render.notebooks_dir() / f"{kind}.py") for kind in ORDER}
    shared = dict(code=code_fingerprint(PRESENTATION), training=training_code(), claims=_file_hash(claims_path(root / "params")))
    nodes, refused = {}, []
    for kind in ORDER:
        folder = root / "params" / kind
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                C.check_name(path.stem, "its name")
            except C.ConfigError as e:
                refused.append(f"params/{kind}/{path.name}: {e}; rename the file")
                continue
            node = Node(kind, path.stem, path)
            try:
                cfg = C.resolve(path, profile)
                node.made_from = dict(params=cfg.to_dict())
                node.inputs = [cfg.ticket_from] if kind == "ticket" else list(cfg.inputs) if kind == "compare" else []
            except C.ConfigError:  # rendered anyway: the render stops it with the one-line reason, the rest go on
                node.made_from = dict(unreadable=_file_hash(path))
            node.made_from |= dict(notebook=notebooks[kind], **shared)
            nodes[node.key] = node
    for node in nodes.values():
        node.inputs = [k for k in nodes if k != node.key and not k.startswith("report/")] if node.kind == "report" \
            else [i for i in node.inputs if i in nodes]
    for node in nodes.values():  # in ORDER, every input before what reads it
        node.stamp = hashlib.sha256(json.dumps(node.made_from | {"inputs": {i: nodes[i].stamp for i in node.inputs}},
                                               sort_keys=True).encode()).hexdigest()
    return nodes, refused


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "none"


def up_to_date(node: Node, rendered: Rendered) -> bool:
    return rendered.notebook.is_file() and rendered.stamp.is_file() and rendered.stamp.read_text() == node.stamp


def _with_inputs(nodes: dict[str, Node], keys: list[str]) -> set[str]:
    wanted, stack = set(), list(keys)
    while stack:
        key = stack.pop()
        if key not in wanted:
            wanted.add(key)
            stack += nodes[key].inputs
    return wanted


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _child(target: Path, launch: str, progress: str, pipe) -> None:
    """One render in a process of its own; its outcome goes back through the pipe."""
    try:
        pipe.send(render.run_notebook(target, launch, progress))
    except KeyboardInterrupt:
        pipe.send(dict(notebook=str(target), status="interrupted", reason="interrupted"))
        sys.exit(130)


def warm_up() -> None:
    """Load what every render loads before its own work, and export one small notebook (which compiles the
    templates and the regular expressions of the first export); the forked renders start from here."""
    import jupytext  # noqa: F401
    import papermill  # noqa: F401
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    outputs = [new_output("stream", name="stdout", text="text\n"),
               new_output("display_data", data={"text/markdown": "| a | b |\n|---|---|\n| 1 | 2 |",
                                                "text/html": "<table><tr><td>1</td></tr></table>",
                                                "image/png": png, "text/plain": "figure"})]
    nb = new_notebook(cells=[new_markdown_cell("# Title\nSome *text*, `code` and a [link](https://example.org)."),
                             new_code_cell("from pathlib import Path\nx = {'a': 1.0}  # comment", execution_count=1,
                                           outputs=outputs)],
                      metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}})
    render.html_exporter().from_notebook_node(nb)


def run_session(profile: str, jobs: int, launch: str = "local", only: str = "", root: Path | None = None) -> int:
    """Render what changed (of the experiments matching `only`, and what they read); 0 when nothing failed."""
    start, root = time.time(), Path(root or Path.cwd())
    nodes, refused = graph(root, profile)
    for line in refused:
        print(f"FAILED {line}", flush=True)
    results = root / "results" / profile
    files = {key: Rendered(results, n.kind, n.name) for key, n in nodes.items()}
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [k for k in nodes if not patterns or any(fnmatch.fnmatchcase(k, p) for p in patterns)]
    if patterns and not chosen:
        raise C.ConfigError(f"ONLY={only!r} matches no experiment <notebook>/<name> of params/; e.g. "
                            f"ONLY='*/lenet_*' or ONLY='*/lenet_*,compare/*'")
    wanted = _with_inputs(nodes, chosen)
    todo, stale = [], set()
    for key, node in nodes.items():  # in order: an input is decided before what reads it
        if key in wanted and (not up_to_date(node, files[key]) or stale & set(node.inputs)):
            todo.append(key)
            stale.add(key)
    print(f"{profile} profile: {len(wanted)} notebooks, {len(wanted) - len(todo)} up to date, {len(todo)} to render"
          f" ({jobs} at a time{', as Slurm jobs' if launch == 'slurm' else ''})", flush=True)
    if todo and launch == "local":
        warm_up()
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    outcomes, running, failed, started = {}, {}, set(), 0
    pending = list(todo)
    try:
        while pending or running:
            for key in [k for k in pending if any(i in failed for i in nodes[k].inputs)]:
                pending.remove(key)
                failed.add(key)  # not started: an input failed
            ready = [k for k in pending if not set(nodes[k].inputs) & (set(pending) | set(running))]
            while ready and len(running) < max(1, jobs):
                key = ready.pop(0)
                pending.remove(key)
                started += 1
                no_links(files[key].stamp, root / "results")
                files[key].stamp.unlink(missing_ok=True)  # a render that does not finish is never up to date
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(files[key].notebook, launch,
                                                               f"[{started}/{len(todo)}] ", send))
                process.start()
                send.close()
                running[key] = (process, receive)
            if not running:
                continue
            multiprocessing.connection.wait([p.sentinel for p, _ in running.values()])
            for key in [k for k, (p, _) in running.items() if not p.is_alive()]:
                process, receive = running.pop(key)
                if receive.poll():
                    outcome = receive.recv()
                else:
                    outcome = dict(notebook=key, status="failed", reason=f"its render process died (exit code "
                                                                          f"{process.exitcode})")
                    print(f"{key} FAILED: {outcome['reason']}", flush=True)
                outcomes[key] = outcome
                if outcome["status"] == "rendered":
                    write_atomic(files[key].stamp, nodes[key].stamp)
                else:
                    failed.add(key)
    except KeyboardInterrupt:
        for process, _ in running.values():
            process.join(10)
            if process.is_alive():
                process.terminate()
        print(f"interrupted after {_minutes(time.time() - start)}: {len(running)} render(s) stopped (kept as "
              f".running.ipynb), {len(pending)} not started; run the same command again to go on", flush=True)
        return 130
    print(summary(list(outcomes.values()), len(todo), time.time() - start), flush=True)
    print(learning_line(collect(results, root / "params", profile, only=wanted), len(wanted)), flush=True)
    return 1 if refused or any(o["status"] != "rendered" for o in outcomes.values()) or len(outcomes) < len(todo) else 0


def learning_line(res, notebooks: int) -> str:
    """'54 notebooks, every run above 1.5x chance', or a line per run that is not."""
    low = below_chance(res)
    if not low:
        return f"{notebooks} notebooks, every finished run above {LEARNS:g}x chance"
    return "\n".join([f"{len(low)} finished run(s) below {LEARNS:g}x chance: they may not learn at all"]
                     + [f"  at chance: {line}" for line in low])


def summary(outcomes: list[dict], planned: int, seconds: float) -> str:
    rendered = [o for o in outcomes if o["status"] == "rendered"]
    failed = [o for o in outcomes if o["status"] != "rendered"]
    trained = [o for o in rendered if o["trained"]]
    skipped = planned - len(outcomes)
    lines = [f"done in {_minutes(seconds)}: {len(rendered)} rendered ({len(trained)} trained "
             f"{sum(o['trained'] for o in rendered)} runs, {sum(o['epochs'] for o in rendered)} epochs in all; "
             f"{len(rendered) - len(trained)} only read finished runs), {len(failed)} failed"
             + (f", {skipped} not started because an input failed" if skipped else "")]
    lines += [f"  failed {o['notebook']}: {o['reason']}" for o in failed]
    return "\n".join(lines)
