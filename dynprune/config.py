"""One typed home for every parameter of a run.

`Config`'s fields are the single source of defaults, allowed values and help text. The CLI builds its
flags from them, the notebooks receive them through `resolve`, and `validate` is the only place that
decides what is allowed. Resolution order: dataclass defaults < experiment YAML < profile overlay <
explicit overrides. Parameter files come from other people: every value is type- and range-checked
(non-finite numbers included), every name that becomes a folder is checked, and nothing here imports
torch, so a bad file is refused in a fraction of a second.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import itertools
import json
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent

DATASETS = ("mnist", "fashion_mnist", "cifar10")
MODELS = ("lenet_300_100", "conv4", "resnet18", "resnet34", "vgg_like", "vgg19")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "onecycle", "multistep", "constant")
SPARSITY_SCHEDULES = ("linear", "linear_paper", "cubic", "oneshot")
PRUNE_SCOPES = ("global", "layerwise")
DEVICES = ("auto", "cpu", "cuda", "mps")
INITS = ("kaiming_fan_out", "kaiming_fan_in", "torchvision_vgg", "glorot_normal")
METHODS = ("dynamic", "random", "random_layerwise", "snip", "imp", "ticket_check")
SOURCES = ("", "seed", "later_paper", "frankle_carbin_2019")
MAX_SEED = 2**31 - 1

# A name that becomes a folder or a make target: plain characters only, never '.', '..' or hidden.
SAFE_NAME = re.compile(r"[A-Za-z0-9_=-][A-Za-z0-9._=-]*")


class ConfigError(ValueError):
    """A parameter problem, worded as one line that names the key and the fix."""


def _f(default, help: str, choices=None, low=None, high=None, low_open=False, high_open=False):
    meta = dict(help=help, choices=choices, low=low, high=high, low_open=low_open, high_open=high_open)
    if isinstance(default, dict):  # a mutable default needs a factory
        return dataclasses.field(default_factory=lambda: dict(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    # -- what this run is
    name: str = _f("run", "experiment name (defaults to the parameter file's name)")
    description: str = _f("", "one line saying what this experiment is")
    reported_accuracy: typing.Optional[float] = _f(
        None, "the published test accuracy (%) this experiment is compared with; never used by training",
        low=0.0, high=100.0)
    reported_by: str = _f("", "who published reported_accuracy: seed (the seed repository), later_paper "
                              "(arXiv 2606.12278), frankle_carbin_2019", choices=SOURCES)
    seed: int = _f(42, "seed for initialisation, data order, validation split and augmentation", low=0, high=MAX_SEED)
    seeds: tuple[int, ...] = _f((), "run the experiment once per seed in this list (empty: once, with `seed`)",
                                low=0, high=MAX_SEED)
    grid: dict[str, tuple] = _f({}, "run every combination of these values, e.g. {final_sparsity: [0.5, 0.9]}; "
                                "each combination, for each seed, is its own run in <name>/<key>=<value>/.../seed<k>")

    # -- how it runs (these change the numbers a little, so they are part of a run's identity)
    device: str = _f("auto", "where to train: auto picks cuda, then mps, then cpu", choices=DEVICES)
    threads: int = _f(0, "CPU threads for training (0 = the process default); results on a CPU depend on it", low=0)
    processes: int = _f(1, "processes that train one run together with torch.distributed (one per GPU; "
                           "launched through torchrun); 1 = no distribution", low=1, high=1024)
    precision: str = _f("fp32", "bf16 runs forward and loss under bfloat16 autocast (weights stay fp32)",
                        choices=("fp32", "bf16"))
    compile: bool = _f(False, "torch.compile the model (pays a compile time once per run)")
    channels_last: bool = _f(True, "channels-last memory layout for conv nets (faster; off = the plain layout)")

    # -- data
    dataset: str = _f("cifar10", "data set", choices=DATASETS)
    data_root: str = _f("", "data folder; empty = $DYNPRUNE_DATA, else ~/.cache/dynprune/data")
    download: bool = _f(True, "download through torchvision when the data set is missing")
    val_fraction: float = _f(0.0, "fraction of the training set held out for validation (0 = none)",
                             low=0.0, high=1.0, high_open=True)
    train_subset: int = _f(0, "use a seeded random subset of this many training images (0 = all)", low=0)
    test_subset: int = _f(0, "evaluate on a seeded random subset of this many test images (0 = all)", low=0)
    resize: int = _f(0, "resize images to this side length once at load (0 = keep)", low=0, high=1024)
    crop_padding: int = _f(0, "random crop with this much zero padding (0 = off)", low=0, high=64)
    hflip: bool = _f(False, "random horizontal flip with p = 0.5")
    rotation: float = _f(0.0, "random rotation in [-deg, +deg] (0 = off)", low=0.0, high=180.0)
    translate: float = _f(0.0, "random translation up to this fraction of the side (0 = off)", low=0.0, high=1.0)
    jitter: float = _f(0.0, "colour jitter strength for brightness, contrast and saturation (0 = off)",
                       low=0.0, high=1.0)
    jitter_hue: float = _f(0.0, "colour jitter hue shift in [-h, +h] (0 = off)", low=0.0, high=0.5)
    erasing: float = _f(0.0, "random erasing probability per image (0 = off)", low=0.0, high=1.0)

    # -- model
    model: str = _f("resnet18", "network", choices=MODELS)
    width: float = _f(1.0, "multiplier on every layer's width (1 = the published size)",
                      low=0.0, low_open=True, high=8.0)
    init: str = _f("kaiming_fan_out", "weight initialisation: Kaiming-normal fan_out for conv and linear (the "
                   "seed's), fan_in, torchvision's VGG (fan_out conv, N(0, 0.01) linear), or Glorot-normal "
                   "(Frankle & Carbin)", choices=INITS)

    # -- training
    epochs: int = _f(200, "training epochs", low=1, high=100_000)
    batch_size: int = _f(128, "mini-batch size (the global batch when several processes train one run)",
                         low=1, high=1_000_000)
    optimizer: str = _f("sgd", "optimizer", choices=OPTIMIZERS)
    lr: float = _f(0.1, "learning rate (the peak for onecycle)", low=0.0, low_open=True, high=100.0)
    momentum: float = _f(0.9, "SGD momentum", low=0.0, high=1.0, high_open=True)
    nesterov: bool = _f(False, "Nesterov momentum (SGD)")
    weight_decay: float = _f(5e-4, "weight decay on all parameters", low=0.0, high=1.0)
    lr_schedule: str = _f("cosine", "learning-rate schedule; onecycle steps per batch, the others per epoch",
                          choices=LR_SCHEDULES)
    lr_milestones: tuple[int, ...] = _f((), "epochs at which multistep multiplies the lr by lr_gamma")
    lr_gamma: float = _f(0.1, "multistep decay factor", low=0.0, low_open=True, high=1.0)
    label_smoothing: float = _f(0.1, "cross-entropy label smoothing", low=0.0, high=1.0, high_open=True)

    # -- pruning
    method: str = _f("dynamic", "dynamic: prune during training by the schedule; random, random_layerwise, snip: "
                     "prune at initialisation, then train with the mask fixed; imp: iterative magnitude pruning "
                     "with rewinding (lottery notebook); ticket_check: retrain a dynamic run's mask (ticket notebook)",
                     choices=METHODS)
    final_sparsity: float = _f(0.8, "fraction of prunable weights that are zero at the end",
                               low=0.0, high=1.0, high_open=True)
    sparsity_schedule: str = _f(
        "linear", "how the target rises to final_sparsity: linear = the seed's S*(e-start)/(P-start), dense at "
        "start, S from the start of epoch P; linear_paper = the later paper's S*(e-start+1)/(P-start), S from "
        "epoch P-1; cubic = Zhu & Gupta's cubic ramp from start to P; oneshot = S from start", choices=SPARSITY_SCHEDULES)
    prune_start_epoch: int = _f(0, "first epoch of the pruning ramp (earlier epochs train dense)", low=0)
    prune_end_epoch: typing.Optional[int] = _f(
        None, "P of the schedule's formula (see sparsity_schedule); null = final_sparsity is reached in the "
              "last epoch (P = epochs - 1 for linear and cubic, epochs for linear_paper)", low=1)
    prune_every_steps: int = _f(0, "update the masks every this many optimizer steps, the target taken at the "
                                   "fractional epoch (0 = once, at the start of every epoch)", low=0)
    prune_scope: str = _f("global", "one threshold over all prunable tensors, or the same fraction in each",
                          choices=PRUNE_SCOPES)
    prune_exclude: tuple[str, ...] = _f((), "fnmatch patterns of weight names never pruned (e.g. 'fc.*')")
    snip_batches: int = _f(4, "snip: batches the saliency |g * w| is averaged over", low=1)
    imp_rate: float = _f(0.2, "imp: fraction of the remaining weights pruned per round", low=0.0, low_open=True,
                         high=1.0, high_open=True)
    imp_layer_rates: dict[str, float] = _f({}, "imp with prune_scope layerwise: per-layer rates by weight-name "
                                               "pattern, e.g. {'net.5.weight': 0.1}; other layers use imp_rate")
    imp_stops: tuple[float, ...] = _f((), "imp: sparsities a round must land on exactly on the way to final_sparsity")
    imp_reinit: int = _f(0, "imp: also train the mask of every n-th level from a fresh initialisation (the random "
                            "re-initialisation control of Frankle & Carbin); 0 = never, 1 = every level", low=0)
    rewind_step: int = _f(0, "imp / ticket_check: rewind to the state after this many optimizer steps (weights, "
                             "learning-rate schedule and data order) and train the remaining steps; 0 = the "
                             "initialisation; dynamic runs save the weights at this step", low=0)
    ticket_from: str = _f("", "ticket_check: the dynamic-pruning experiment whose final masks are retrained, "
                              "e.g. dynamic_pruning/lenet_mnist_s80 (same profile)")

    @property
    def prune_end(self) -> int:
        """P of the schedule's formula, with null resolved to 'reached in the last epoch'."""
        if self.prune_end_epoch is not None:
            return self.prune_end_epoch
        return self.epochs if self.sparsity_schedule in ("linear_paper", "oneshot") else self.epochs - 1

    def to_dict(self) -> dict:
        plain = {k: _plain(v) for k, v in dataclasses.asdict(self).items()}
        plain["grid"] = {k: [_plain(x) for x in v] for k, v in self.grid.items()}
        return plain

    def replace(self, **changes) -> "Config":
        return build(self.to_dict() | changes)


# What describes a run without changing what it computes: not part of its identity (see runs.py).
DESCRIPTIVE = ("name", "description", "reported_accuracy", "reported_by", "data_root", "download")


@dataclass(frozen=True)
class CompareConfig:
    """A comparison reads finished run folders; it never trains."""
    name: str = _f("compare", "comparison name (defaults to the parameter file's name)")
    description: str = _f("", "one line saying what is compared")
    inputs: tuple[str, ...] = _f((), "experiments to read, as <notebook>/<name> under results/<profile>/")
    dense: str = _f("", "the input that is the dense baseline")
    ticket: str = _f("", "the ticket_check input whose verdict is printed")
    dynamic: str = _f("", "the dynamic-pruning input the cost ratios are taken against")
    tolerance: float = _f(0.5, "a winning ticket retrains to within this many points of dense", low=0.0, high=100.0)
    reference: str = _f("", "a published curve to draw beside IMP: frankle_carbin_2019_lenet", choices=("", "frankle_carbin_2019_lenet"))

    def to_dict(self) -> dict:
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class ReportConfig:
    """The report reads every finished run of its profile; it never trains."""
    name: str = _f("summary", "report name (defaults to the parameter file's name)")
    description: str = _f("", "one line saying what the report covers")
    tolerance: float = _f(0.5, "a published accuracy counts as confirmed when our 95 % interval lies no more "
                               "than this many points below it", low=0.0, high=100.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


# A grid varies how a run trains; what names the run or multiplies it cannot vary inside one file.
NOT_IN_GRID = ("name", "description", "reported_accuracy", "reported_by", "seed", "seeds", "grid", "method")

SCHEMAS = {"compare": CompareConfig, "report": ReportConfig}  # notebook -> parameter schema; every other notebook takes Config
NOTEBOOKS = ("dynamic_pruning", "lottery", "ticket", "compare", "report")
METHODS_OF = {"dynamic_pruning": ("dynamic", "random", "random_layerwise", "snip"), "lottery": ("imp",),
              "ticket": ("ticket_check",)}


@functools.cache
def fields(schema=Config) -> dict:
    return {f.name: f for f in dataclasses.fields(schema)}


@functools.cache
def hints(schema=Config) -> dict:
    return typing.get_type_hints(schema)


FIELDS = fields(Config)


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
    text = repr(value)
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
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return ConfigError(f"{where}unknown parameter {_short(key)}{hint}; allowed: {', '.join(names)}")


def check_name(value: str, what: str) -> str:
    """A name that becomes a folder: plain characters only, so it can never leave its results folder."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or len(value) > 128:
        raise ConfigError(f"{what} {_short(value)} is not a plain name: use letters, digits and . _ = - only "
                          f"(no '/', no leading dot, at most 128 characters)")
    return value


def check_experiment_key(value: str, what: str) -> str:
    """'<notebook>/<name>', each part a plain name: how one experiment names another."""
    parts = value.split("/") if isinstance(value, str) else []
    if len(parts) != 2 or parts[0] not in NOTEBOOKS:
        raise ConfigError(f"{what} {_short(value)} must name an experiment as <notebook>/<name>, e.g. "
                          f"dynamic_pruning/lenet_mnist_s80 (notebooks: {', '.join(NOTEBOOKS)})")
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
        for key in ("inputs", "dense", "ticket", "dynamic"):
            for value in (getattr(cfg, key, None) or ()) if key == "inputs" else filter(None, [getattr(cfg, key, "")]):
                check_experiment_key(value, f"parameter '{key}':")
    return cfg


def validate(cfg: Config) -> None:
    """The rules that involve more than one parameter."""
    ramp = cfg.method == "dynamic" and cfg.final_sparsity > 0 and cfg.sparsity_schedule != "oneshot"
    if cfg.prune_end > cfg.epochs:
        raise ConfigError(f"parameter 'prune_end_epoch' is {cfg.prune_end_epoch} but the run has only "
                          f"{cfg.epochs} epochs; use a value <= epochs (or null for the last epoch)")
    if ramp and cfg.sparsity_schedule in ("linear", "cubic") and cfg.prune_end >= cfg.epochs:
        raise ConfigError(f"with sparsity_schedule {cfg.sparsity_schedule} the target is reached at the start of "
                          f"epoch prune_end_epoch = {cfg.prune_end}, which a {cfg.epochs}-epoch run never starts "
                          f"(the seed's own off-by-one: 79.6 % for 80 %); use prune_end_epoch <= {cfg.epochs - 1} or null")
    if ramp and cfg.prune_start_epoch > cfg.prune_end - (cfg.sparsity_schedule == "linear_paper"):
        raise ConfigError(f"parameter 'prune_start_epoch' ({cfg.prune_start_epoch}) must be before "
                          f"prune_end_epoch ({cfg.prune_end})")
    if cfg.sparsity_schedule == "oneshot" and cfg.prune_start_epoch >= cfg.epochs:
        raise ConfigError(f"parameter 'prune_start_epoch' ({cfg.prune_start_epoch}) must be < epochs ({cfg.epochs})")
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
        check_experiment_key(cfg.ticket_from, "parameter 'ticket_from':")
    elif cfg.ticket_from:
        raise ConfigError(f"parameter 'ticket_from' is only for method ticket_check (this run is {cfg.method})")
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


# -- parameter files and profiles -------------------------------------------------------------------

class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """safe_load that refuses duplicate keys: the second one would silently win. On libyaml where PyYAML has
    it: the pure-Python parser takes 14 ms for the quick profile's file, and the report reads it 100 times."""

    def construct_mapping(self, node, deep=False):
        seen = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_short(key)}", key_node.start_mark)
            seen.append(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path, allow_empty: bool = False) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    except (UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path} cannot be read as a YAML text file ({type(e).__name__})") from None
    if data is None and allow_empty:
        return {}
    if data is None:
        raise ConfigError(f"{path} is empty; it must be a mapping of parameters, e.g. 'epochs: 30'")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of parameters, got a {type(data).__name__}")
    return data


def _check_keys(values, where: str, schema=Config) -> dict:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: must be a mapping of parameters, got {_short(values)}")
    for key in values:
        _check_key(key, f"{where}: ", schema)
    return values


def kind_of(params_file: Path) -> str:
    """The notebook a parameter file belongs to: the name of its folder (params/<notebook>/<name>.yaml)."""
    return Path(params_file).parent.name


def experiment_key(params_file: Path) -> str:
    """'params/dynamic_pruning/mnist_val.yaml' -> 'dynamic_pruning/mnist_val' (the key profiles use)."""
    params_file = Path(params_file)
    return f"{params_file.parent.name}/{params_file.stem}"


def params_root(params_file: Path | None = None) -> Path:
    """The params/ folder whose profiles apply: the one the file lies in, else this project's."""
    if params_file is not None and Path(params_file).resolve().parent.parent.name == "params":
        return Path(params_file).resolve().parent.parent
    return PROJECT / "params"


def read_profile(profile: str, root: Path) -> dict:
    check_name(profile, "profile")
    path = Path(root) / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"profile '{profile}' has no file {path}; known profiles: {', '.join(known) or 'none'}")
    data = read_yaml(path, allow_empty=True)
    extra = set(data) - {"default", "experiments", "resources"}
    if extra:
        raise ConfigError(f"{path}: unknown section(s) {sorted(map(str, extra))}; allowed: default, experiments, resources")
    return data


def profile_overrides(params_file: Path, profile: str, schema=Config) -> dict:
    """A profile file has `default:` (every experiment) and `experiments: {kind/name: {...}}`."""
    path = params_root(params_file) / "profiles" / f"{profile}.yaml"
    data = read_profile(profile, path.parent.parent)
    merged = dict(_check_keys(data.get("default") or {}, str(path))) if schema is Config else {}
    specific = data.get("experiments") or {}
    if not isinstance(specific, dict):
        raise ConfigError(f"{path}: experiments must map <notebook>/<name> to parameters, got {_short(specific)}")
    return merged | _check_keys(dict(specific.get(experiment_key(params_file)) or {}),
                                f"{path} [{experiment_key(params_file)}]", schema)


def schema_for(params_file) -> type:
    """params/<notebook>/<name>.yaml is read with the schema of its notebook."""
    return SCHEMAS.get(kind_of(params_file), Config) if params_file is not None else Config


def resolve(params_file=None, profile: str = "paper", overrides: dict | None = None):
    """What exactly would run: defaults < parameter file < profile < overrides."""
    values: dict = {}
    where = ""
    schema = schema_for(params_file)
    if params_file is not None:
        params_file = Path(params_file)
        where = f"{params_file}: "
        values = {"name": params_file.stem} | _check_keys(read_yaml(params_file), str(params_file), schema)
        values |= profile_overrides(params_file, profile, schema)
    values |= _check_keys(dict(overrides or {}), "overrides", schema)
    try:
        return build(values, schema)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def resources(params_file: Path, profile: str) -> dict:
    """What one notebook of this profile asks a cluster for: `resources:` of the profile file, with an
    optional `per_experiment: {kind/name: {...}}` inside it."""
    root = params_root(params_file)
    data = read_profile(profile, root).get("resources") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{root}/profiles/{profile}.yaml: resources must be a mapping, e.g. {{gpus: 1, cpus: 8}}")
    specific = (data.get("per_experiment") or {}).get(experiment_key(params_file)) or {}
    return {k: v for k, v in data.items() if k != "per_experiment"} | dict(specific)


# -- seeds and grids: the runs of one parameter file ------------------------------------------------

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
        if not SAFE_NAME.fullmatch(text) or len(text) > 64:
            text = "h" + hashlib.sha1(json.dumps(_plain(value), sort_keys=True).encode()).hexdigest()[:12]
        parts.append(f"{key}={text}")
    return "/".join(parts)


def label_without(point: dict, key: str) -> str:
    """The label of a grid point without `key`: the series a point belongs to when drawn against `key`."""
    return point_label({k: v for k, v in point.items() if k != key})


@dataclass(frozen=True)
class Run:
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


def runs_of(cfg: Config) -> list[Run]:
    """The runs a parameter file asks for: every grid point times every seed."""
    return [Run(cfg.replace(**point, seed=seed, seeds=[], grid={}), point,
                "/".join(filter(None, (point_folder(point), f"seed{seed}"))))
            for point in grid_points(cfg) for seed in run_seeds(cfg)]


def dumps(cfg) -> str:
    return json.dumps(cfg.to_dict(), indent=2)
