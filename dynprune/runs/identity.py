"""What makes two runs the same run: the one rule for reusing summaries, IMP levels, checkpoints and tickets.

A run's identity is its resolved parameters (minus the purely descriptive ones: name, description, where the
data lies) plus a fingerprint of the code that decides its numbers, plus the identities of what it reads (its
data files; a ticket check's source run).

The code that decides a run's numbers is a package, not a list: every module of `dynprune.core` and
`dynprune.lottery`, and the configuration's defaults. A module counts by its syntax tree without
docstrings, so a comment, a docstring or a reformatted line changes nothing, while a new module with code
in `core/` changes the fingerprint without anyone remembering to list it. Nothing above those packages
(runs, sparse kernels, analysis, report, pipeline, CLI) is in it: editing a figure label never makes a
finished result stale. The sparse kernels have a fingerprint of their own, which an export records.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import json
import textwrap
from pathlib import Path

from dynprune.config import DESCRIPTIVE, Config
from dynprune.config.schema import AUTO_INIT

PACKAGE = Path(__file__).resolve().parent.parent  # dynprune/
TRAINING_CODE = ("core", "lottery")                # the subpackages whose code decides a run's numbers


def code_text(source: str) -> str:
    """The code of a module as its syntax tree, without comments, docstrings or formatting."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or ([] if isinstance(node, ast.Module) else [ast.Pass()])
    return ast.unparse(tree)


def code_fingerprint(parts: tuple[str, ...], root: Path | None = None) -> str:
    """A hash over every module with code under the given subpackages (or single modules) of `root` (dynprune/)."""
    root = PACKAGE if root is None else root
    digest = hashlib.sha256()
    for part in parts:
        paths = sorted((root / part).rglob("*.py")) if (root / part).is_dir() else [root / part]
        for path in paths:
            code = code_text(path.read_text())
            if code:  # an empty __init__.py or a module of comments only is no code
                digest.update(path.relative_to(root).as_posix().encode() + b"\0" + code.encode() + b"\0")
    return digest.hexdigest()[:16]


def config_defaults() -> str:
    """What training reads from the configuration: every default, what `init: auto` means for each model, and
    the rules that resolve prune_end and the initialisation."""
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(Config)}
    rules = "".join(code_text(textwrap.dedent(inspect.getsource(prop.fget)))
                    for prop in (Config.prune_end, Config.initialisation))
    return json.dumps([defaults, AUTO_INIT], sort_keys=True, default=list) + rules


@functools.cache
def training_code() -> str:
    """The fingerprint of the training code: core, lottery and the configuration's defaults."""
    return hashlib.sha256((code_fingerprint(TRAINING_CODE) + config_defaults()).encode()).hexdigest()[:16]


@functools.cache
def sparse_code() -> str:
    """The fingerprint of the sparse kernels and their export: what an export's figures were measured with."""
    return code_fingerprint(("sparse",))


def identity(cfg, inputs: dict | None = None) -> dict:
    params = {k: v for k, v in cfg.to_dict().items() if k not in DESCRIPTIVE}
    return {"params": params, "code": training_code(), "inputs": dict(inputs or {})}


def key(ident: dict) -> str:
    """A short stable name for an identity (also the folder a stale result is moved to)."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def differences(old: dict, new: dict) -> list[str]:
    """What differs between two identities, as words: 'code', 'inputs', or the parameter names."""
    if not isinstance(old, dict):
        return ["everything (no identity recorded)"]
    out = ["code"] if old.get("code") != new["code"] else []
    out += ["inputs"] if old.get("inputs") != new["inputs"] else []
    params_old = old.get("params") or {}
    out += sorted(k for k in set(params_old) | set(new["params"]) if params_old.get(k) != new["params"].get(k))
    return out
