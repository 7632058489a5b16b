"""One typed home for every parameter of a run.

`Config`'s fields are the single source of defaults, allowed values and help text. The CLI builds its
flags from them, the notebooks receive them through `resolve`, and `validate` is the only place that
decides what is allowed. Resolution order: dataclass defaults < experiment YAML < profile overlay <
explicit overrides.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
import json
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

DATASETS = ("mnist", "fashion_mnist", "cifar10")
MODELS = ("lenet_300_100", "conv4", "resnet18", "resnet34", "vgg_like", "vgg19")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "onecycle", "multistep", "constant")
SPARSITY_SCHEDULES = ("linear", "cubic", "oneshot")
PRUNE_SCOPES = ("global", "layerwise")
DEVICES = ("auto", "cpu", "cuda", "mps")
INITS = ("kaiming_fan_out", "kaiming_fan_in", "torchvision_vgg")
METHODS = ("dynamic", "random", "random_layerwise", "snip", "imp", "ticket_check")


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
    seed: int = _f(42, "seed for initialisation, data order, validation split and augmentation")
    seeds: tuple[int, ...] = _f((), "run the experiment once per seed in this list (empty: once, with `seed`)")
    grid: dict[str, tuple] = _f({}, "run every combination of these values, e.g. {final_sparsity: [0.5, 0.9]}; "
                                "each combination, for each seed, is its own run in <name>/<key>=<value>/seed<k>")
    device: str = _f("auto", "where to train: auto picks cuda, then mps, then cpu", choices=DEVICES)
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
    resize: int = _f(0, "resize images to this side length once at load (0 = keep)", low=0)
    crop_padding: int = _f(0, "random crop with this much zero padding (0 = off)", low=0)
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
                   "seed's), fan_in, or torchvision's VGG (fan_out conv, N(0, 0.01) linear)", choices=INITS)

    # -- training
    epochs: int = _f(200, "training epochs", low=1)
    batch_size: int = _f(128, "mini-batch size", low=1)
    optimizer: str = _f("sgd", "optimizer", choices=OPTIMIZERS)
    lr: float = _f(0.1, "learning rate (the peak for onecycle)", low=0.0, low_open=True)
    momentum: float = _f(0.9, "SGD momentum", low=0.0, high=1.0, high_open=True)
    nesterov: bool = _f(False, "Nesterov momentum (SGD)")
    weight_decay: float = _f(5e-4, "weight decay on all parameters", low=0.0)
    lr_schedule: str = _f("cosine", "learning-rate schedule; onecycle steps per batch, the others per epoch",
                          choices=LR_SCHEDULES)
    lr_milestones: tuple[int, ...] = _f((), "epochs at which multistep multiplies the lr by lr_gamma")
    lr_gamma: float = _f(0.1, "multistep decay factor", low=0.0, low_open=True, high=1.0)
    label_smoothing: float = _f(0.1, "cross-entropy label smoothing", low=0.0, high=1.0, high_open=True)

    # -- pruning
    method: str = _f("dynamic", "dynamic: prune during training by the schedule; random, random_layerwise, snip: "
                     "prune at initialisation, then train with the mask fixed; imp: iterative magnitude pruning "
                     "with rewinding (lottery notebook); ticket_check: retrain a dynamic run's mask (lottery notebook)",
                     choices=METHODS)
    final_sparsity: float = _f(0.8, "fraction of prunable weights that are zero at the end",
                               low=0.0, high=1.0, high_open=True)
    sparsity_schedule: str = _f("linear", "how the target rises to final_sparsity", choices=SPARSITY_SCHEDULES)
    prune_start_epoch: int = _f(0, "first epoch with a non-zero target (earlier epochs train dense)", low=0)
    prune_end_epoch: typing.Optional[int] = _f(
        None, "the target reaches final_sparsity in epoch prune_end_epoch - 1 and stays there "
              "(None = epochs: the last epoch)", low=1)
    prune_scope: str = _f("global", "one threshold over all prunable tensors, or the same fraction in each",
                          choices=PRUNE_SCOPES)
    prune_exclude: tuple[str, ...] = _f((), "fnmatch patterns of weight names never pruned (e.g. 'fc.*')")
    snip_batches: int = _f(4, "snip: batches the saliency |g * w| is averaged over", low=1)
    imp_rate: float = _f(0.2, "imp: fraction of the remaining weights pruned per round", low=0.0, low_open=True,
                         high=1.0, high_open=True)
    imp_stops: tuple[float, ...] = _f((), "imp: sparsities a round must land on exactly on the way to final_sparsity")
    rewind_step: int = _f(0, "imp / ticket_check: rewind to the weights after this many optimizer steps "
                             "(0 = the original initialisation); dynamic runs save the weights at this step", low=0)
    ticket_from: str = _f("", "ticket_check: the dynamic-pruning experiment whose final masks are retrained, "
                              "e.g. dynamic_pruning/lenet_mnist_s80")

    @property
    def prune_end(self) -> int:
        return self.epochs if self.prune_end_epoch is None else self.prune_end_epoch

    def to_dict(self) -> dict:
        plain = {k: _plain(v) for k, v in dataclasses.asdict(self).items()}
        plain["grid"] = {k: [_plain(x) for x in v] for k, v in self.grid.items()}
        return plain

    def replace(self, **changes) -> "Config":
        return build(self.to_dict() | changes)


@dataclass(frozen=True)
class CompareConfig:
    """A comparison reads finished run folders; it never trains."""
    name: str = _f("compare", "comparison name (defaults to the parameter file's name)")
    description: str = _f("", "one line saying what is compared")
    inputs: tuple[str, ...] = _f((), "experiments to read, as <notebook>/<name> under results/<profile>/")
    dense: str = _f("", "the input that is the dense baseline")
    ticket: str = _f("", "the ticket_check input whose verdict is printed")
    dynamic: str = _f("", "the dynamic-pruning input the cost ratios are taken against")
    tolerance: float = _f(0.5, "a winning ticket retrains to within this many points of dense", low=0.0)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class ReportConfig:
    """The report reads every finished run of its profile; it never trains."""
    name: str = _f("summary", "report name (defaults to the parameter file's name)")
    description: str = _f("", "one line saying what the report covers")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


# A grid varies how a run trains; what names the run or multiplies it cannot vary inside one file.
NOT_IN_GRID = ("name", "description", "reported_accuracy", "seed", "seeds", "grid", "method")

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)
SCHEMAS = {"compare": CompareConfig, "report": ReportConfig}  # notebook -> parameter schema; every other notebook takes Config


@functools.cache
def _fields(schema) -> dict:
    return {f.name: f for f in dataclasses.fields(schema)}


@functools.cache
def _hints(schema) -> dict:
    return typing.get_type_hints(schema)


def describe_type(name: str, schema=Config) -> str:
    hint = _hints(schema)[name]
    if typing.get_origin(hint) is tuple:
        return f"list of {typing.get_args(hint)[0].__name__}"
    if typing.get_origin(hint) is typing.Union:
        return f"{typing.get_args(hint)[0].__name__} or null"
    if typing.get_origin(hint) is dict:
        return "mapping of parameter -> list of values"
    return hint.__name__


def _coerce(name: str, value, schema=Config):
    """Check one value's type; ints are accepted where floats are expected, nothing else is converted."""
    hint = _hints(schema)[name]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    wrong = ConfigError(f"parameter '{name}' must be of type {describe_type(name, schema)}, got {value!r}")
    if origin is dict:
        return _coerce_grid(value)
    if origin is typing.Union:  # Optional[int]
        return None if value is None else _coerce_scalar(args[0], value, wrong)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong
        return tuple(_coerce_scalar(args[0], v, wrong) for v in value)
    return _coerce_scalar(hint, value, wrong)


def _coerce_grid(grid) -> dict:
    """{field: [values]}; each value is checked as that field's value would be."""
    if not isinstance(grid, dict):
        raise ConfigError(f"parameter 'grid' must map parameter names to lists of values, e.g. "
                          f"{{final_sparsity: [0.5, 0.9]}}; got {grid!r}")
    checked = {}
    for key, values in grid.items():
        if key not in FIELDS:
            raise unknown_key_error(key, "grid: ")
        if key in NOT_IN_GRID:
            raise ConfigError(f"grid: '{key}' cannot vary inside one parameter file (not in a grid: "
                              f"{', '.join(NOT_IN_GRID)}); use seeds for seeds, another file for the rest")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid: '{key}' must be a non-empty list of values, e.g. {key}: [a, b]; got {values!r}")
        typed = tuple(_coerce(key, v) for v in values)
        for v in typed:
            _check_range(key, v)
        if len(set(typed)) != len(typed):
            raise ConfigError(f"grid: '{key}' lists a value twice: {values}")
        checked[key] = typed
    return checked


def _coerce_scalar(kind, value, wrong):
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if isinstance(value, bool):  # bool is an int subclass: True is not an epoch count
        raise wrong
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, kind):
        return value
    raise wrong


def _check_range(name: str, value, schema=Config) -> None:
    m = _fields(schema)[name].metadata
    if m["choices"] is not None and value not in m["choices"]:
        raise ConfigError(f"parameter '{name}' is {value!r}; allowed: {', '.join(m['choices'])}")
    if isinstance(value, tuple):
        for v in value:
            _check_range(name, v, schema)
        return
    if value is None or not isinstance(value, (int, float)):
        return
    low, high = m["low"], m["high"]
    too_low = low is not None and (value <= low if m["low_open"] else value < low)
    too_high = high is not None and (value >= high if m["high_open"] else value > high)
    if too_low or too_high:
        lo = "" if low is None else f"{'>' if m['low_open'] else '>='} {low}"
        hi = "" if high is None else f"{'<' if m['high_open'] else '<='} {high}"
        raise ConfigError(f"parameter '{name}' is {value}; it must be {' and '.join(s for s in (lo, hi) if s)}")


def unknown_key_error(key: str, where: str = "", schema=Config) -> ConfigError:
    names = list(_fields(schema))
    near = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return ConfigError(f"{where}unknown parameter '{key}'{hint}; allowed: {', '.join(names)}")


def build(values: dict, schema=Config):
    """Type-check, range-check and cross-check a flat dict of parameters into a `schema` instance."""
    for key in values:
        if key not in _fields(schema):
            raise unknown_key_error(key, schema=schema)
    typed = {k: _coerce(k, v, schema) for k, v in values.items()}
    for k, v in typed.items():
        _check_range(k, v, schema)
    cfg = schema(**typed)
    if schema is Config:
        validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """The rules that involve more than one parameter."""
    if cfg.prune_end > cfg.epochs:
        raise ConfigError(f"parameter 'prune_end_epoch' is {cfg.prune_end_epoch} but the run has only "
                          f"{cfg.epochs} epochs; use a value <= epochs (or null for the last epoch)")
    if cfg.prune_start_epoch >= cfg.prune_end and cfg.final_sparsity > 0 and cfg.sparsity_schedule != "oneshot":
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
    if cfg.method == "ticket_check" and not cfg.ticket_from:
        raise ConfigError("method 'ticket_check' needs ticket_from, e.g. dynamic_pruning/lenet_mnist_s80")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"parameter 'seeds' lists a seed twice: {list(cfg.seeds)}")
    for point in grid_points(cfg) if cfg.grid else ():  # every combination must be a valid run on its own
        try:
            cfg.replace(**point, grid={})
        except ConfigError as e:
            raise ConfigError(f"grid point {point_label(point)}: {e}") from None


# -- parameter files and profiles -------------------------------------------------------------------

def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if data is None:
        raise ConfigError(f"{path} is empty; it must be a mapping of parameters, e.g. 'epochs: 30'")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of parameters, got a {type(data).__name__}")
    return data


def _check_keys(values: dict, where: str, schema=Config) -> dict:
    for key in values:
        if key not in _fields(schema):
            raise unknown_key_error(key, f"{where}: ", schema)
    return values


def experiment_key(params_file: Path) -> str:
    """'params/dynamic_pruning/mnist_val.yaml' -> 'dynamic_pruning/mnist_val' (the key profiles use)."""
    params_file = Path(params_file)
    return f"{params_file.parent.name}/{params_file.stem}"


def profile_overrides(params_file: Path, profile: str, schema=Config) -> dict:
    """A profile file has `default:` (every experiment) and `experiments: {kind/name: {...}}`."""
    path = Path(params_file).parent.parent / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"profile '{profile}' has no file {path}; known profiles: {', '.join(known) or 'none'}")
    data = yaml.safe_load(path.read_text()) or {}
    extra = set(data) - {"default", "experiments"}
    if extra:
        raise ConfigError(f"{path}: unknown section(s) {sorted(extra)}; allowed: default, experiments")
    merged = dict(data.get("default") or {}) if schema is Config else {}  # defaults are training parameters
    _check_keys(merged, str(path))
    specific = (data.get("experiments") or {}).get(experiment_key(params_file)) or {}
    return merged | _check_keys(dict(specific), f"{path} [{experiment_key(params_file)}]", schema)


def schema_for(params_file) -> type:
    """params/<notebook>/<name>.yaml is read with the schema of its notebook."""
    return SCHEMAS.get(Path(params_file).parent.name, Config) if params_file is not None else Config


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


def run_seeds(cfg: Config) -> list[int]:
    return list(cfg.seeds) or [cfg.seed]


def grid_points(cfg: Config) -> list[dict]:
    """Every combination of the grid's values, in file order ([{}] without a grid)."""
    return [dict(zip(cfg.grid, values)) for values in itertools.product(*cfg.grid.values())]


def point_label(point: dict) -> str:
    """{'final_sparsity': 0.9, 'lr': 0.01} -> 'final_sparsity=0.9,lr=0.01' (also the run's folder name)."""
    def text(v):
        return "+".join(map(text, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)
    return ",".join(f"{k}={text(v)}" for k, v in point.items())


def label_without(label: str, key: str) -> str:
    """'final_sparsity=0.9,lr=0.01' without 'final_sparsity' -> 'lr=0.01': the series a grid point belongs to
    when its results are drawn against `key`."""
    return ",".join(part for part in label.split(",") if part and not part.startswith(f"{key}="))


@dataclass(frozen=True)
class Run:
    """One training run of an experiment: one seed at one grid point."""
    cfg: Config      # what trains: seeds and grid resolved away
    point: dict      # the grid values of this run ({} without a grid)
    folder: str      # relative to the experiment's folder: [<point>/]seed<k>

    @property
    def label(self) -> str:
        return point_label(self.point)


def runs_of(cfg: Config) -> list[Run]:
    """The runs a parameter file asks for: every grid point times every seed."""
    return [Run(cfg.replace(**point, seed=seed, seeds=[], grid={}), point,
                "/".join(filter(None, (point_label(point), f"seed{seed}"))))
            for point in grid_points(cfg) for seed in run_seeds(cfg)]


def dumps(cfg) -> str:
    return json.dumps(cfg.to_dict(), indent=2)
