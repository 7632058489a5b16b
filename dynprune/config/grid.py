"""Seeds and grids: the runs one parameter file asks for, each in a folder of its own."""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass

from dynprune.config.schema import Config, _plain

VALUE_TEXT = re.compile(r"[A-Za-z0-9_.+-]{1,64}")  # a grid value that names its folder as it is (else by a hash)

def run_seeds(cfg: Config) -> list[int]:
    return list(cfg.seeds) or [cfg.seed]


def grid_points(cfg: Config) -> list[dict]:
    """Every combination of the grid's values, in file order ([{}] without a grid)."""
    return [dict(zip(cfg.grid, values)) for values in itertools.product(*cfg.grid.values())]


def value_text(value) -> str:
    """A grid value as people write it: shortest round-trip text for floats, 'a_b' for lists."""
    if isinstance(value, tuple):
        return "_".join(map(value_text, value))
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def point_label(point: dict) -> str:
    """{'final_sparsity': 0.9, 'lr': 0.01} -> 'final_sparsity=0.9, lr=0.01' (how a grid point is shown)."""
    return ", ".join(f"{k}={value_text(v)}" for k, v in point.items())


def point_folder(point: dict) -> str:
    """{'final_sparsity': 0.9, 'lr': 0.01} -> 'final_sparsity=0.9/lr=0.01': one folder level per key. A value
    whose text is not a plain name (a '/' in it, a pattern) is named by a hash of its exact value instead, so
    every folder is a plain name and different values never share one."""
    parts = []
    for key, value in point.items():
        text = value_text(value)
        if not VALUE_TEXT.fullmatch(text):
            text = "h" + hashlib.sha1(json.dumps(_plain(value), sort_keys=True).encode()).hexdigest()[:12]
        parts.append(f"{key}={text}")
    return "/".join(parts)


def label_without(point: dict, key: str) -> str:
    """The label of a grid point without `key`: the series a point belongs to when drawn against `key`."""
    return point_label({k: v for k, v in point.items() if k != key})


@dataclass(frozen=True)
class RunSpec:
    """One training run of an experiment: one seed at one grid point."""
    cfg: Config      # what trains: seeds and grid resolved away
    point: dict      # the grid values of this run ({} without a grid)
    folder: str      # relative to the experiment's folder: [<key>=<value>/...]seed<k>

    @property
    def label(self) -> str:
        return point_label(self.point)

    @property
    def point_folder(self) -> str:
        return point_folder(self.point)


def runs_of(cfg: Config) -> list[RunSpec]:
    """The runs a parameter file asks for: every grid point times every seed."""
    return [RunSpec(cfg.replace(**point, seed=seed, seeds=[], grid={}), point,
                "/".join(filter(None, (point_folder(point), f"seed{seed}"))))
            for point in grid_points(cfg) for seed in run_seeds(cfg)]
