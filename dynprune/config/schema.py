"""The parameters of a run, one typed dataclass: every field's default, allowed values and help text.

`Config`'s fields are the single source of defaults, allowed values and help text: the CLI builds its flags from
them, the notebooks receive them through `resolve` (files.py), and `build` / `validate` (checks.py) are the only
place that decides what is allowed. Comparisons and the report have small schemas of their own.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import typing
from dataclasses import dataclass

DATASETS = ("mnist", "fashion_mnist", "cifar10")
MODELS = ("lenet_300_100", "conv4", "resnet18", "resnet34", "resnet50", "vgg_like", "vgg19", "vit")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "onecycle", "multistep", "constant")
SPARSITY_SCHEDULES = ("linear", "linear_paper", "cubic", "oneshot", "adaptive")
PRUNE_SCOPES = ("global", "layerwise")
DEVICES = ("auto", "cpu", "cuda", "mps")
INITS = ("auto", "kaiming_fan_out", "kaiming_fan_in", "torchvision_vgg", "glorot_normal", "vit")
# What `init: auto` means for each model: what it is known to train with (LeNet-300-100 and Conv-4 diverge or
# trail with fan_out, whose scale suits convolutions followed by BatchNorm; a VGG head of three Linear layers
# needs torchvision's N(0, 0.01); the ViT takes ViT/DeiT's truncated N(0, 0.02^2)). The seed's experiments name
# their (fan_out) initialisation explicitly.
AUTO_INIT = {"lenet_300_100": "kaiming_fan_in", "conv4": "kaiming_fan_in", "resnet18": "kaiming_fan_out",
             "resnet34": "kaiming_fan_out", "resnet50": "kaiming_fan_out", "vgg_like": "torchvision_vgg",
             "vgg19": "torchvision_vgg", "vit": "vit"}
METHODS = ("dynamic", "random", "random_layerwise", "snip", "imp", "ticket_check")
MAX_SEED = 2**31 - 1
SPARSE_TRAINING = ("rigl",)  # dynamic sparse training: sparse from the first step, masks that regain entries
CRITERIA = ("magnitude", "taylor", "movement")  # what ranks weights at a dynamic mask update (core/criteria.py)
RIGL_INITS = ("erk", "uniform")

# A name that becomes a folder or a make target: plain characters only, never '.', '..' or hidden.
# A name that becomes a folder, a file or a command-line argument (experiments, profiles): letters, digits and
# . _ - only, never a leading '.' or '-', no '=' (make would read a target with one as a variable).
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


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
    init: str = _f("auto", "weight initialisation: auto (what the model is known to train with: fan_in for LeNet "
                   "and Conv-4, fan_out for ResNets, torchvision's for VGGs, vit for the ViT), Kaiming-normal "
                   "fan_out for conv and linear (the seed's), fan_in, torchvision's VGG (fan_out conv, N(0, 0.01) "
                   "linear), Glorot-normal (Frankle & Carbin), or ViT/DeiT's (truncated N(0, 0.02^2))",
                   choices=INITS)

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
                     "with rewinding (lottery notebook); ticket_check: retrain a dynamic run's mask (ticket notebook); "
                     "rigl: dynamic sparse training (Evci et al. 2020), at final_sparsity from the first step, "
                     "dropping and regrowing weights every rigl_interval steps",
                     choices=METHODS + SPARSE_TRAINING)
    final_sparsity: float = _f(0.8, "fraction of prunable weights that are zero at the end",
                               low=0.0, high=1.0, high_open=True)
    sparsity_schedule: str = _f(
        "linear", "how the target rises to final_sparsity: linear = the seed's S*(e-start)/(P-start), dense at "
        "start, S from the start of epoch P; linear_paper = the later paper's S*(e-start+1)/(P-start), S from "
        "epoch P-1; cubic = Zhu & Gupta's cubic ramp from start to P; oneshot = S from start; adaptive = linear's "
        "targets, but a pruning step waits until the training loss has recovered to its level before the previous "
        "one (at most adaptive_max_wait update times), S from the start of epoch P", choices=SPARSITY_SCHEDULES)
    prune_start_epoch: int = _f(0, "first epoch of the pruning ramp (earlier epochs train dense)", low=0)
    prune_end_epoch: typing.Optional[int] = _f(
        None, "P of the schedule's formula (see sparsity_schedule); null = final_sparsity is reached in the "
              "last epoch (P = epochs - 1 for linear and cubic, epochs for linear_paper)", low=1)
    prune_every_steps: int = _f(0, "update the masks every this many optimizer steps, the target taken at the "
                                   "fractional epoch (0 = once, at the start of every epoch)", low=0)
    prune_scope: str = _f("global", "one threshold over all prunable tensors, or the same fraction in each",
                          choices=PRUNE_SCOPES)
    prune_exclude: tuple[str, ...] = _f((), "fnmatch patterns of weight names never pruned (e.g. 'fc.*')")
    criterion: str = _f("magnitude", "dynamic: what ranks the active weights at a mask update, the lowest pruned: "
                        "magnitude |w|; taylor = first-order Taylor saliency |w * dL/dw|, the mean over the steps "
                        "since the last update (Molchanov et al. 2019); movement = -(sum of w * dL/dw over every "
                        "step so far) (Sanh et al. 2020)", choices=CRITERIA)
    adaptive_max_wait: int = _f(2, "sparsity_schedule adaptive: update times a pruning step waits at most for the "
                                   "training loss to recover (0 = never waits: linear's updates)", low=0)
    rigl_init: str = _f("erk", "rigl: the layers' densities, erk (Erdos-Renyi-Kernel: density proportional to "
                        "(n_in + n_out + k_h + k_w) / (n_in n_out k_h k_w)) or uniform (the same in every layer)",
                        choices=RIGL_INITS)
    rigl_interval: int = _f(100, "rigl: optimizer steps between two drop-and-regrow updates", low=1)
    rigl_drop: float = _f(0.3, "rigl: fraction of each layer's active weights dropped (and as many regrown) at "
                               "the first update, decaying to 0 at rigl_end (cosine)", low=0.0, low_open=True,
                          high=1.0)
    rigl_end: float = _f(0.75, "rigl: fraction of the run's optimizer steps after which the masks stay fixed",
                         low=0.0, low_open=True, high=1.0)
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
    def initialisation(self) -> str:
        """The initialisation that runs: `init`, with auto resolved for the model."""
        return AUTO_INIT[self.model] if self.init == "auto" else self.init

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
        from dynprune.config.checks import build  # checks.py builds Configs: the one import that must wait
        return build(self.to_dict() | changes)


# What describes a run without changing what it computes: not part of its identity (runs/identity.py).
DESCRIPTIVE = ("name", "description", "data_root", "download")


@dataclass(frozen=True)
class CompareConfig:
    """A comparison reads finished run folders; it never trains."""
    name: str = _f("compare", "comparison name (defaults to the parameter file's name)")
    description: str = _f("", "one line saying what is compared")
    inputs: tuple[str, ...] = _f((), "experiments to read, as <notebook>/<name> under results/<profile>/")
    tolerance: float = _f(0.5, "two accuracies count as comparable within this many points (the claims' verdicts)",
                          low=0.0, high=100.0)

    def to_dict(self) -> dict:
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class ReportConfig:
    """The report reads every finished run of its profile; it never trains."""
    name: str = _f("summary", "report name (defaults to the parameter file's name)")
    description: str = _f("", "one line saying what the report covers")
    tolerance: float = _f(0.5, "a published accuracy counts as confirmed when our 95 % interval lies no more than "
                               "this many points below it; two accuracies are comparable within it", low=0.0, high=100.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


# A grid varies how a run trains; what names the run or multiplies it cannot vary inside one file.
NOT_IN_GRID = ("name", "description", "seed", "seeds", "grid", "method")

SCHEMAS = {"compare": CompareConfig, "report": ReportConfig}  # notebook -> parameter schema; every other notebook takes Config
NOTEBOOKS = ("dynamic_pruning", "lottery", "ticket", "compare", "report")


@functools.cache
def fields(schema=Config) -> dict:
    return {f.name: f for f in dataclasses.fields(schema)}


@functools.cache
def hints(schema=Config) -> dict:
    return typing.get_type_hints(schema)


FIELDS = fields(Config)
