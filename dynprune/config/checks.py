"""Every value checked before anything runs: types, ranges, names that become folders, and the rules between
parameters. Parameter files come from other people: every value is type- and range-checked (non-finite numbers
included) and every name that becomes a folder is a plain name."""
from __future__ import annotations

import difflib
import json
import math
import reprlib
import typing

from dynprune.config.grid import grid_points, point_folder, point_label
from dynprune.config.schema import NOT_IN_GRID, NOTEBOOKS, SAFE_NAME, Config, ConfigError, _plain, fields, hints

MAX_THREADS = 4096  # CPU threads a run may ask for

def describe_type(name: str, schema=Config) -> str:
    hint = hints(schema)[name]
    if typing.get_origin(hint) is tuple:
        return f"list of {typing.get_args(hint)[0].__name__}"
    if typing.get_origin(hint) is typing.Union:
        return f"{typing.get_args(hint)[0].__name__} or null"
    if name == "grid":
        return "mapping of parameter -> list of values"
    if typing.get_origin(hint) is dict:
        return "mapping of text -> number"
    return hint.__name__


def _coerce(name: str, value, schema=Config):
    """Check one value's type; ints are accepted where floats are expected, nothing else is converted."""
    hint = hints(schema)[name]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    wrong = ConfigError(f"parameter '{name}' must be of type {describe_type(name, schema)}, got {_short(value)}")
    if name == "grid":
        return _coerce_grid(value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise wrong
        return {k: _coerce_scalar(name, args[1], v, wrong) for k, v in value.items()}
    if origin is typing.Union:  # Optional[int]
        return None if value is None else _coerce_scalar(name, args[0], value, wrong)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong
        return tuple(_coerce_scalar(name, args[0], v, wrong) for v in value)
    return _coerce_scalar(name, hint, value, wrong)


def _coerce_scalar(name, kind, value, wrong):
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if isinstance(value, bool):  # bool is an int subclass: True is not an epoch count
        raise wrong
    if kind is float and isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigError(f"parameter '{name}' is {value}; it must be a finite number")
        return float(value)
    if isinstance(value, kind):
        return value
    raise wrong


def _coerce_grid(grid) -> dict:
    """{field: [values]}; each value is checked as that field's value would be."""
    if not isinstance(grid, dict):
        raise ConfigError(f"parameter 'grid' must map parameter names to lists of values, e.g. "
                          f"{{final_sparsity: [0.5, 0.9]}}; got {_short(grid)}")
    checked = {}
    for key, values in grid.items():
        _check_key(key, "grid: ")
        if key in NOT_IN_GRID:
            raise ConfigError(f"grid: '{key}' cannot vary inside one parameter file (not in a grid: "
                              f"{', '.join(NOT_IN_GRID)}); use seeds for seeds, another file for the rest")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid: '{key}' must be a non-empty list of values, e.g. {key}: [a, b]; got {_short(values)}")
        typed = tuple(_coerce(key, v) for v in values)
        for v in typed:
            _check_range(key, v)
        texts = [json.dumps(_plain(v), sort_keys=True) for v in typed]
        if len(set(texts)) != len(texts):
            raise ConfigError(f"grid: '{key}' lists a value twice: {_short(values)}")
        checked[key] = typed
    return checked


def _check_range(name: str, value, schema=Config) -> None:
    m = fields(schema)[name].metadata
    if isinstance(value, dict):
        for v in value.values():
            if not 0 < v < 1:
                raise ConfigError(f"parameter '{name}' has the rate {v}; rates must be > 0 and < 1")
        return
    if isinstance(value, tuple):
        for v in value:
            _check_range(name, v, schema)
        return
    if m["choices"] is not None and value not in m["choices"]:
        allowed = ", ".join(c or "''" for c in m["choices"])
        raise ConfigError(f"parameter '{name}' is {_short(value)}; allowed: {allowed}")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = m["low"], m["high"]
    too_low = low is not None and (value <= low if m["low_open"] else value < low)
    too_high = high is not None and (value >= high if m["high_open"] else value > high)
    if too_low or too_high:
        lo = "" if low is None else f"{'>' if m['low_open'] else '>='} {low}"
        hi = "" if high is None else f"{'<' if m['high_open'] else '<='} {high}"
        raise ConfigError(f"parameter '{name}' is {value}; it must be {' and '.join(s for s in (lo, hi) if s)}")


def _short(value) -> str:
    """A value as a few dozen characters, whatever its size (reprlib stops early: a nested or aliased value from a
    hostile file is never expanded)."""
    text = reprlib.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_key(key, where: str = "", schema=Config) -> None:
    if not isinstance(key, str):
        raise ConfigError(f"{where}parameter names are text; got {_short(key)} ({type(key).__name__}): "
                          f"quote it or fix the line")
    if key not in fields(schema):
        raise unknown_key_error(key, where, schema)


def unknown_key_error(key: str, where: str = "", schema=Config) -> ConfigError:
    names = list(fields(schema))
    near = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean '{near[0]}'?" if near else "python -m dynprune config --help lists every parameter"
    return ConfigError(f"{where}unknown parameter {_short(key)} ({hint})")


def check_name(value: str, what: str) -> str:
    """A name that becomes a folder: plain characters only, so it can never leave its results folder."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or len(value) > 128:
        raise ConfigError(f"{what} {_short(value)} is not a plain name: use letters, digits and . _ - only "
                          f"(no '/', '=', '%' or space, no leading '.' or '-', at most 128 characters)")
    return value


def check_experiment_key(value: str, what: str, kinds: tuple[str, ...] = NOTEBOOKS) -> str:
    """'<notebook>/<name>', each part a plain name, the notebook one of `kinds`: how one experiment names another."""
    parts = value.split("/") if isinstance(value, str) else []
    if len(parts) != 2 or parts[0] not in kinds:
        raise ConfigError(f"{what} {_short(value)} must name an experiment as <notebook>/<name> with notebook "
                          f"{' or '.join(kinds)}, e.g. dynamic_pruning/lenet_mnist_s80")
    check_name(parts[1], what)
    return value


def build(values: dict, schema=Config):
    """Type-check, range-check and cross-check a flat dict of parameters into a `schema` instance."""
    for key in values:
        _check_key(key, schema=schema)
    typed = {k: _coerce(k, v, schema) for k, v in values.items()}
    for k, v in typed.items():
        if k != "grid":
            _check_range(k, v, schema)
    cfg = schema(**typed)
    check_name(cfg.name, "parameter 'name'")
    if schema is Config:
        validate(cfg)
    else:
        for value in getattr(cfg, "inputs", ()):  # what a comparison reads: experiments that hold runs
            check_experiment_key(value, "parameter 'inputs':", kinds=("dynamic_pruning", "lottery", "ticket"))
    return cfg


def validate(cfg: Config) -> None:
    """The rules that involve more than one parameter."""
    ramp = cfg.method == "dynamic" and cfg.final_sparsity > 0 and cfg.sparsity_schedule != "oneshot"
    if cfg.prune_end > cfg.epochs:
        raise ConfigError(f"parameter 'prune_end_epoch' is {cfg.prune_end_epoch} but the run has only "
                          f"{cfg.epochs} epochs; use a value <= epochs (or null for the last epoch)")
    reached_at_start_of_p = cfg.sparsity_schedule in ("linear", "cubic", "adaptive")
    if ramp and reached_at_start_of_p and cfg.prune_end >= cfg.epochs:
        raise ConfigError(f"with sparsity_schedule {cfg.sparsity_schedule} the target is reached at the start of "
                          f"epoch prune_end_epoch = {cfg.prune_end}, which a {cfg.epochs}-epoch run never starts "
                          f"(the seed's own off-by-one: 79.6 % for 80 %); use prune_end_epoch <= {cfg.epochs - 1} or null")
    if ramp and cfg.prune_start_epoch > cfg.prune_end - (cfg.sparsity_schedule == "linear_paper"):
        raise ConfigError(f"parameter 'prune_start_epoch' ({cfg.prune_start_epoch}) must be before "
                          f"prune_end_epoch ({cfg.prune_end})")
    if cfg.sparsity_schedule == "oneshot" and cfg.prune_start_epoch >= cfg.epochs:
        raise ConfigError(f"parameter 'prune_start_epoch' ({cfg.prune_start_epoch}) must be < epochs ({cfg.epochs})")
    _check_criterion(cfg)
    _check_rigl(cfg)
    if cfg.lr_schedule == "multistep" and not cfg.lr_milestones:
        raise ConfigError("lr_schedule 'multistep' needs lr_milestones, e.g. [100, 150]")
    bad = [m for m in cfg.lr_milestones if not 0 < m < cfg.epochs]
    if bad:
        raise ConfigError(f"parameter 'lr_milestones' has {bad} outside 1..{cfg.epochs - 1}")
    bad = [s for s in cfg.imp_stops if not 0 < s < cfg.final_sparsity]
    if bad:
        raise ConfigError(f"parameter 'imp_stops' has {bad} outside (0, final_sparsity = {cfg.final_sparsity})")
    if cfg.imp_layer_rates and cfg.prune_scope != "layerwise":
        raise ConfigError("parameter 'imp_layer_rates' needs prune_scope: layerwise (a global threshold has no "
                          "per-layer rates)")
    if cfg.method == "imp" and cfg.final_sparsity == 0:
        raise ConfigError("method 'imp' needs final_sparsity > 0: the sparsity its rounds prune down to")
    if cfg.method == "ticket_check":
        if not cfg.ticket_from:
            raise ConfigError("method 'ticket_check' needs ticket_from, e.g. dynamic_pruning/lenet_mnist_s80")
        check_experiment_key(cfg.ticket_from, "parameter 'ticket_from':", kinds=("dynamic_pruning",))
    elif cfg.ticket_from:
        raise ConfigError(f"parameter 'ticket_from' is only for method ticket_check (this run is {cfg.method})")
    if cfg.threads > MAX_THREADS:  # torch.set_num_threads takes a C int: a larger value is a traceback there
        raise ConfigError(f"parameter 'threads' is {cfg.threads}; use at most {MAX_THREADS} (0 = the process default)")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"parameter 'seeds' lists a seed twice: {list(cfg.seeds)}")
    if cfg.processes > 1 and cfg.method in ("imp", "ticket_check"):
        raise ConfigError(f"parameter 'processes' > 1 is for one training run (dynamic pruning, dense, at-init); "
                          f"method {cfg.method} trains several runs in turn: use processes: 1")
    if cfg.grid:
        folders = set()
        for point in grid_points(cfg):  # every combination must be a valid run on its own, in a folder of its own
            try:
                cfg.replace(**point, grid={})
            except ConfigError as e:
                raise ConfigError(f"grid point {point_label(point)}: {e}") from None
            folders.add(point_folder(point))
        if len(folders) != len(grid_points(cfg)):
            raise ConfigError("grid: two points would share a folder; make the values differ in their text")


def _check_criterion(cfg: Config) -> None:
    if cfg.criterion == "magnitude":
        return
    if cfg.method != "dynamic":
        raise ConfigError(f"parameter 'criterion' ({cfg.criterion}) ranks the weights at the mask updates of method "
                          f"dynamic; method {cfg.method} has none: remove criterion (or use method: dynamic)")
    if cfg.final_sparsity == 0 or cfg.prune_start_epoch > 0:
        return
    why = f"criterion {cfg.criterion} ranks weights by the gradients of training steps, but"
    if cfg.sparsity_schedule in ("linear_paper", "oneshot"):
        raise ConfigError(f"{why} sparsity_schedule {cfg.sparsity_schedule} prunes before the first step; use "
                          f"prune_start_epoch: 1 (one epoch of dense training first), or criterion: magnitude")
    if cfg.prune_end == 0:  # null in a one-epoch run
        raise ConfigError(f"{why} a one-epoch run reaches final_sparsity before its first step; use epochs >= 2, "
                          f"or criterion: magnitude")


def _check_rigl(cfg: Config) -> None:
    """RigL trains at final_sparsity from the first step: the schedule's parameters mean nothing to it."""
    if cfg.method != "rigl":
        return
    if cfg.final_sparsity == 0:
        raise ConfigError("method 'rigl' needs final_sparsity > 0: the sparsity it trains at from the first step")
    if cfg.sparsity_schedule != "linear":
        raise ConfigError(f"parameter 'sparsity_schedule' ({cfg.sparsity_schedule}) does not apply to method rigl, "
                          f"which trains at final_sparsity from the first step: remove it (rigl_interval, rigl_drop "
                          f"and rigl_end set how its masks change)")
    if cfg.prune_every_steps:
        raise ConfigError("parameter 'prune_every_steps' does not apply to method rigl: remove it (its masks change "
                          "every rigl_interval steps)")
    if cfg.prune_scope != "global":
        raise ConfigError("parameter 'prune_scope' does not apply to method rigl: remove it (rigl_init: uniform "
                          "gives every layer the same fraction, erk scales it with the layer's shape)")
