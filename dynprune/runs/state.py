"""What a run folder holds, judged read-only by identity: done, stale, unfinished or missing.

The one rule, shared by reusing a run (lifecycle.py), `make status` and the report: a folder is *done* when its
summary carries the identity this run would have (parameters, training code, data, what it reads); *stale* when
it holds a finished run of another identity; where the data is not on this machine (a colleague's run folders,
`make results` without DYNPRUNE_DATA) a finished run is judged by its parameters and code alone. Nothing here
imports torch or writes a file.
"""
from __future__ import annotations

from pathlib import Path

from dynprune.config import Config, RunSpec
from dynprune.core.data_files import data_fingerprint
from dynprune.foundations.text_files import read_json_or_empty
from dynprune.runs import identity
from dynprune.runs.paths import RunFolder


def run_identity(cfg: Config, ticket_source: str | None = None) -> dict:
    """The identity of one run: parameters and training code (identity.py), the data it reads, and for a
    ticket check the identity of the run whose masks it retrains."""
    inputs = {"data": data_fingerprint(cfg)} | ({"ticket_from": ticket_source} if cfg.method == "ticket_check" else {})
    return identity.identity(cfg, inputs)


def finished(folder: RunFolder, ident: dict) -> dict | None:
    """The summary of a finished run of exactly this identity, else None."""
    summary = read_json_or_empty(folder.summary)
    return summary if summary and summary.get("identity") == identity.key(ident) else None


def claimed(folder: RunFolder) -> dict:
    """The identity a run folder says it holds ({} where it says nothing readable)."""
    return read_json_or_empty(folder.identity)


def _same_but_data(folder: RunFolder, ident: dict) -> bool:
    """Only where the data is not on this machine: the finished run has these parameters and this code."""
    if ident["inputs"].get("data") != "missing":
        return False
    claim = claimed(folder)
    recorded = claim.get("identity")
    key = read_json_or_empty(folder.summary).get("identity")
    if not isinstance(recorded, dict) or key != claim.get("key") or key != identity.key(recorded):
        return False

    def without_data(i: dict) -> dict:
        return i | {"inputs": {k: v for k, v in (i.get("inputs") or {}).items() if k != "data"}}
    return identity.key(without_data(recorded)) == identity.key(without_data(ident))


def reusable(folder: RunFolder, ident: dict) -> dict | None:
    """The summary of a finished run to reuse (and count as done): of exactly this identity, or where the data
    is not on this machine, of these parameters and this code."""
    summary = finished(folder, ident)
    if summary is None and _same_but_data(folder, ident):
        summary = read_json_or_empty(folder.summary) or None
    return summary


def status(folder: RunFolder, ident: dict) -> str:
    """done | stale (finished by other code or parameters) | unfinished | missing — without taking the lock."""
    if reusable(folder, ident) is not None:
        return "done"
    if folder.summary.is_file():
        return "stale"
    return "unfinished" if folder.identity.is_file() else "missing"


def state_of(results: Path, key: str, run: RunSpec) -> tuple[str, dict | None]:
    """(state, summary) of one run of experiment `key` under `results`, read only: the summary of a done or
    stale run, else None; an unreadable summary counts as missing (the report and `make status`)."""
    folder = RunFolder(Path(results) / key / run.folder)
    source = None
    if run.cfg.method == "ticket_check":  # its identity holds the identity of the run whose masks it retrains
        source = read_json_or_empty(RunFolder(Path(results) / run.cfg.ticket_from / run.folder).summary).get("identity")
    state = status(folder, run_identity(run.cfg, source))
    summary = read_json_or_empty(folder.summary) or None if state in ("done", "stale") else None
    return ("missing", None) if summary is None and state in ("done", "stale") else (state, summary)
