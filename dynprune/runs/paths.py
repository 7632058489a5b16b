"""Every file dynprune writes, by name: the results of a profile, and the files of one run folder.

    results/                                    results_root(): DYNPRUNE_RESULTS, else the project's results/
        <profile>/                              one profile's batch results
            index.html                          the report page
            <notebook>/<name>.ipynb, .html      a rendered experiment; .running.ipynb while it renders, .failed.ipynb
            <notebook>/<name>/                  its runs, one RunFolder per [<key>=<value>/...]seed<k>/
            logs/<notebook>/<name>.log          everything the render printed (.events.jsonl: a line per run)
            .pipeline/stamps/<notebook>/<name>  what the rendered notebook was made from (pipeline/schedule.py)
            .pipeline/locks/<notebook>/<name>.lock
        lab/<profile>/<notebook>/<name>/        what a notebook started in JupyterLab writes
        .slots/slot-<k>.lock                    device slots: one notebook per GPU
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dynprune.config import PROJECT

TICKET_VARIANTS = ("rewind_init", "rewind_k", "reinit", "random_mask")  # a ticket check's subfolders


def results_root() -> Path:
    return Path(os.environ.get("DYNPRUNE_RESULTS") or PROJECT / "results")


def profile_results(profile: str) -> Path:
    """The batch results of a profile (what notebooks started from JupyterLab read, never write)."""
    return results_root() / profile


def lab_run_dir(kind: str, profile: str, name: str) -> Path:
    """Where a notebook run from JupyterLab writes: results/lab/, apart from every batch result."""
    return results_root() / "lab" / profile / kind / name


def slot_lock(slot: str) -> Path:
    return results_root() / ".slots" / f"slot-{slot}.lock"


@dataclass(frozen=True)
class Rendered:
    """One experiment of a profile: its rendered notebook, its runs and its logs under results/<profile>/."""
    results: Path   # results/<profile>
    kind: str       # the notebook
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    def _at(self, suffix: str) -> Path:
        return self.results / self.kind / f"{self.name}{suffix}"

    notebook = property(lambda self: self._at(".ipynb"))
    html = property(lambda self: self._at(".html"))
    running = property(lambda self: self._at(".running.ipynb"))
    failed = property(lambda self: self._at(".failed.ipynb"))
    runs = property(lambda self: self._at(""))             # the experiment's folder of run folders
    log = property(lambda self: self.results / "logs" / self.kind / f"{self.name}.log")
    events = property(lambda self: self.log.with_suffix(".events.jsonl"))
    slurm_log = property(lambda self: self.log.with_suffix(".slurm.log"))
    stamp = property(lambda self: self.results / ".pipeline" / "stamps" / self.kind / self.name)
    lock = property(lambda self: self.results / ".pipeline" / "locks" / self.kind / f"{self.name}.lock")


@dataclass(frozen=True)
class RunFolder:
    """The files of one run (one seed at one grid point); `summary.json` is written last: present means finished.

        identity.json       the identity of what the folder holds (parameters + code + inputs), written first
        summary.json        headline numbers, the resolved parameters, the identity
        history.csv         one row per epoch                  layers.csv   per-layer sparsity of the final masks
        environment.json    versions, device, hardware, commit train.log    every line the run printed
        ticket.safetensors  final masks (bits), final weights (sparse), initial and step-k weights (dense)
        figures/*.png       its curves                         checkpoint.pt only while it is unfinished
        levels/             IMP: each finished level, its checkpoints, the dense states
        rewind_init/ ...    a ticket check: one RunFolder per way of retraining the mask
        export/             the sparse network and its measurement (sparse/measure.py)
        stale/<identity>/   earlier results of another identity, kept, never deleted
        .lock               held while a process works on the folder
    """
    path: Path

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    identity = property(lambda self: self.path / "identity.json")
    summary = property(lambda self: self.path / "summary.json")
    history = property(lambda self: self.path / "history.csv")
    layers = property(lambda self: self.path / "layers.csv")
    environment = property(lambda self: self.path / "environment.json")
    train_log = property(lambda self: self.path / "train.log")
    ticket = property(lambda self: self.path / "ticket.safetensors")
    figures = property(lambda self: self.path / "figures")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    export = property(lambda self: self.path / "export")
    measurement = property(lambda self: self.path / "export" / "measurement.json")
    stale = property(lambda self: self.path / "stale")
    lock = property(lambda self: self.path / ".lock")
    states = property(lambda self: self.path / "levels" / "states.safetensors")

    def level(self, n: int) -> Path:
        return self.path / "levels" / f"level_{n:02d}.safetensors"

    def level_checkpoint(self, n: int, reinit: bool = False) -> Path:
        return self.path / "levels" / f"level_{n:02d}{'.reinit' if reinit else ''}.checkpoint.pt"

    def variant(self, name: str) -> "RunFolder":
        return RunFolder(self.path / name)
