"""A run in words, generated from its resolved parameters: what every page and notebook says a run does, so
that no description can drift from what ran."""
from __future__ import annotations

from dynprune.config.grid import grid_points
from dynprune.config.schema import Config

MODELS = {"lenet_300_100": "LeNet-300-100", "conv4": "Conv-4", "resnet18": "ResNet-18", "resnet34": "ResNet-34",
          "resnet50": "ResNet-50", "vgg_like": "VGG-like", "vgg19": "VGG-19", "vit": "ViT (4 blocks, dim 64)"}
DATASETS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def _with_paper(value, paper_value, text=str) -> str:
    return text(value) if paper_value is None or paper_value == value else f"{text(value)} (paper: {text(paper_value)})"


# What each criterion's pruning is called; a criterion not named here is "<name> pruning".
CRITERIA = {"magnitude": "dynamic pruning", "taylor": "dynamic first-order Taylor pruning",
            "movement": "movement pruning"}
RIGL_INITS = {"erk": "ERK", "uniform": "uniform"}


def describe(cfg: Config, paper: Config | None = None) -> str:
    """One sentence of what this run does, from its resolved parameters; where a profile changed a value, the
    paper-profile value follows in brackets ('4 epochs (paper: 200)')."""
    p = paper if paper is not None and paper != cfg else None
    get = (lambda k: getattr(p, k)) if p is not None else (lambda k: None)  # noqa: E731
    what = f"{MODELS[cfg.model]}"
    if cfg.width != 1:
        what += f" at {_with_paper(cfg.width, get('width'), lambda w: f'{w:g}×')} width"
    what += f" on {DATASETS[cfg.dataset]}"
    if cfg.train_subset:
        paper_subset = get("train_subset")
        what += f" ({cfg.train_subset:,} training images" + (
            "" if p is None or paper_subset == cfg.train_subset else f"; paper: {f'{paper_subset:,}' if paper_subset else 'all'}") + ")"
    target = (", ".join(f"{s:.0%}" for s in cfg.grid["final_sparsity"]) if "final_sparsity" in cfg.grid
              else f"{cfg.final_sparsity:.1%}")
    if cfg.method == "dynamic" and (cfg.final_sparsity > 0 or "final_sparsity" in cfg.grid):
        how = (f"{CRITERIA.get(cfg.criterion, cfg.criterion + ' pruning')} to {target} sparsity ({_schedule(cfg)}"
               f"the target reached in epoch {_reached(cfg)})")
    elif cfg.method == "rigl":
        how = (f"RigL at {target} sparsity ({RIGL_INITS[cfg.rigl_init]}, drop {cfg.rigl_drop:.0%} every "
               f"{cfg.rigl_interval} steps, decaying to 0 at {cfg.rigl_end:.0%} of training)")
    elif cfg.method == "dynamic":
        how = "dense training (no pruning)"
    elif cfg.method == "imp":
        how = (f"iterative magnitude pruning to {cfg.final_sparsity:.1%} ({cfg.imp_rate:.0%} per round, "
               f"{'layer by layer' if cfg.prune_scope == 'layerwise' else 'one global threshold'}, rewinding to "
               f"{'step ' + str(cfg.rewind_step) if cfg.rewind_step else 'the initialisation'})")
    elif cfg.method == "ticket_check":
        how = f"retraining the final masks of {cfg.ticket_from} four ways"
    else:
        how = f"pruning at initialisation ({cfg.method}) to {cfg.final_sparsity:.1%}"
    seeds = cfg.seeds or (cfg.seed,)
    paper_seeds = (p.seeds or (p.seed,)) if p is not None else None
    train = (f"{_with_paper(cfg.epochs, get('epochs'))} epochs"
             + (" per training cycle" if cfg.method in ("imp", "ticket_check") else "")
             + f", batch {cfg.batch_size}, {cfg.optimizer.upper() if cfg.optimizer == 'sgd' else 'Adam'} "
               f"lr {cfg.lr:g} ({cfg.lr_schedule})")
    runs = _with_paper(len(seeds), len(paper_seeds) if paper_seeds else None)
    grid = f" × {len(grid_points(cfg))} grid points" if cfg.grid else ""
    return f"{what}: {how}; {train}; {runs} seed(s){grid}."


def _schedule(cfg: Config) -> str:
    if cfg.sparsity_schedule != "adaptive":
        return f"{cfg.sparsity_schedule} schedule, "
    return (f"adaptive schedule: linear's targets, each pruning step waiting up to {cfg.adaptive_max_wait} update "
            f"times for the training loss to recover; ")


def _reached(cfg: Config) -> int:
    """The 1-based epoch in which the target first equals final_sparsity."""
    if cfg.sparsity_schedule == "linear_paper":
        return cfg.prune_end
    if cfg.sparsity_schedule == "oneshot":
        return cfg.prune_start_epoch + 1
    return cfg.prune_end + 1
