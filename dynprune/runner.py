"""Render one experiment notebook headlessly: what `make experiments` does for every parameter file.

    <root>/results/<profile>/<notebook>/<name>.ipynb
        <-  notebooks/<notebook>.py  +  <root>/params/<notebook>/<name>.yaml  +  <root>/params/profiles/<profile>.yaml

The parameters are validated before a kernel starts. While running, the notebook is written to
`<name>.running.ipynb`; only a run that finished becomes `<name>.ipynb` (+ `<name>.html`). A failed
one is kept as `<name>.failed.ipynb` for inspection and is never taken as done.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from . import config as C

PROJECT = Path(__file__).resolve().parent.parent


def params_file(experiment: str) -> Path:
    """An experiment is a key under params/ ('dynamic_pruning/mnist_val') or a path to a YAML file."""
    return Path(experiment) if experiment.endswith(".yaml") else PROJECT / "params" / f"{experiment}.yaml"


def parse_output(output: Path) -> tuple[Path, str, str, str]:
    """<root>/results/<profile>/<notebook>/<name>.ipynb -> (root, profile, notebook, name)."""
    output = Path(output).absolute()
    parts = output.parts
    if len(parts) < 5 or parts[-4] != "results" or output.suffix != ".ipynb":
        raise C.ConfigError(f"notebook target {output} is not of the form results/<profile>/<notebook>/<name>.ipynb")
    return output.parents[3], parts[-3], parts[-2], output.stem


def run_notebook(output: Path) -> None:
    import jupytext
    import nbconvert
    import papermill

    root, profile, notebook, name = parse_output(output)
    experiment = root / "params" / notebook / f"{name}.yaml"
    source = PROJECT / "notebooks" / f"{notebook}.py"
    if not source.is_file():
        raise C.ConfigError(f"no notebook {source} for {output}; notebooks: "
                            f"{', '.join(p.stem for p in (PROJECT / 'notebooks').glob('*.py'))}")
    C.resolve(experiment, profile)  # refuse bad parameters before any kernel starts

    output = Path(output).absolute()
    running, failed = output.with_suffix(".running.ipynb"), output.with_suffix(".failed.ipynb")
    for stale in (output, output.with_suffix(".html"), failed):
        stale.unlink(missing_ok=True)
    run_dir = output.with_suffix("")
    # Run folders stay: a dynamic run that finished with the same parameters and code is reused, IMP
    # levels and checkpoints are resumed from (each checked against the parameters before use), and the
    # notebooks delete any summary they do not reuse before training again.
    output.parent.mkdir(parents=True, exist_ok=True)

    parameters = dict(experiment=str(experiment), profile=profile, run_dir=str(run_dir))
    nb = jupytext.read(source)
    if any("inputs_dir" in c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])):
        parameters["inputs_dir"] = str(output.parents[1])  # notebooks that read other runs of this profile
    try:
        papermill.execute_notebook(nb, str(running), parameters=parameters,
                                   kernel_name="python3", progress_bar=False,
                                   cwd=str(PROJECT / "notebooks"), stdout_file=sys.stdout, stderr_file=sys.stderr)
    except papermill.PapermillExecutionError as e:
        os.replace(running, failed)
        raise SystemExit(f"dynprune: {notebook}/{name} ({profile}) failed in cell {e.exec_count}: "
                         f"{e.ename}: {e.evalue}; the notebook is kept in {failed}")
    html, _ = nbconvert.HTMLExporter().from_filename(str(running))
    tmp = output.with_suffix(".html.tmp")
    tmp.write_text(html)
    os.replace(tmp, output.with_suffix(".html"))
    os.replace(running, output)  # last: the .ipynb is what make takes as done
    print(f"rendered {output}")
