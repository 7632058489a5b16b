"""`python -m dynprune deps --profile P`: the make dependencies of a profile, from the parameter files.

Make never reads parameter files or their names itself (they come from other people): this program lists
params/<notebook>/<name>.yaml, refuses any name that is not a plain name, resolves every file and writes
results/<profile>/.make/deps.mk. For each experiment a stamp file holds a hash of everything its rendered
notebook depends on — its resolved parameters, its notebook's code cells (the parameters cell excluded, so
a value saved from JupyterLab changes nothing), the dynprune sources — and is rewritten only when that hash
changes: make re-renders exactly what changed, and a notebook that re-renders after a presentation change
only reads its cached runs (runs.py decides, by identity). Ticket checks and comparisons also depend on the
notebooks of the runs they read; the report on all others.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import config as C
from .store import write_atomic

# Run order within make's freedom: the longest first, so that short ones fill the cores at the end.
ORDER = ("lottery", "dynamic_pruning", "ticket", "compare", "report")
TOOLING = ("cli.py", "makedeps.py", "session.py", "renderserver.py", "status.py", "slurm.py", "bench.py", "results_md.py",
           "__main__.py", "__init__.py")


def notebook_code(path: Path) -> str:
    """The notebook's code and text without its parameters cell and header: what a render depends on."""
    import jupytext
    nb = jupytext.read(path)
    cells = [c.source for c in nb.cells if "parameters" not in c.metadata.get("tags", [])]
    return hashlib.sha256("\n\0".join(cells).encode()).hexdigest()


def presentation_code() -> str:
    """The dynprune sources a rendered notebook shows through (all but the command-line tooling)."""
    digest = hashlib.sha256()
    for path in sorted((C.PROJECT / "dynprune").glob("*.py")):
        if path.name not in TOOLING:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def experiments(root: Path) -> list[tuple[str, str, Path]]:
    """(notebook, name, file) of every parameter file under root/params, names checked."""
    found = []
    for kind in ORDER:
        folder = root / "params" / kind
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.suffix != ".yaml":
                continue
            C.check_name(path.stem, f"parameter file {folder.relative_to(root)}/")
            found.append((kind, path.stem, path))
    return found


def inputs_of(kind: str, cfg) -> list[str]:
    """The experiments (<notebook>/<name>) whose rendered notebooks an experiment reads."""
    if kind == "ticket":
        return [cfg.ticket_from]
    if kind == "compare":
        return list(cfg.inputs)
    return []


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        write_atomic(path, text)


def write_deps(profile: str, out: Path | None = None, root: Path | None = None) -> Path:
    root = Path(root or Path.cwd())
    C.check_name(profile, "profile")
    C.read_profile(profile, root / "params")
    results = Path("results") / profile
    make_dir = root / results / ".make"
    out = Path(out or make_dir / "deps.mk")
    code = presentation_code()
    from .identity import training_code
    training = training_code()
    from .runner import notebooks_dir
    notebook_hash = {kind: notebook_code(notebooks_dir() / f"{kind}.py") for kind in ORDER}
    listed = experiments(root)
    known = {f"{kind}/{name}" for kind, name, _ in listed}
    lines = [f"# written by python -m dynprune deps --profile {profile}: do not edit", ""]
    targets = []
    for kind, name, path in listed:
        target = f"{results}/{kind}/{name}.ipynb"
        targets.append(target)
        try:
            cfg = C.resolve(path, profile)
            resolved = cfg.to_dict()
            inputs = [i for i in inputs_of(kind, cfg) if i in known]
        except C.ConfigError:  # rendered anyway: the runner stops it with the one-line reason, the rest go on
            resolved, inputs = {"unreadable": hashlib.sha256(path.read_bytes()).hexdigest()}, []
        if kind == "report":
            inputs = sorted(k for k in known if not k.startswith("report/"))
        stamp = make_dir / "stamps" / kind / name
        _write_if_changed(stamp, json.dumps(dict(params=resolved, notebook=notebook_hash[kind], code=code,
                                                 training=training), sort_keys=True) + "\n")
        prerequisites = [str(stamp.relative_to(root))] + [f"{results}/{i}.ipynb" for i in inputs]
        lines.append(f"{target}: {' '.join(prerequisites)}")
    lines += ["", f"EXPERIMENTS := {' '.join(targets)}", ""]
    _write_if_changed(out, "\n".join(lines))
    return out
