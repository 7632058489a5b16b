"""What a rendered notebook shows: descriptions generated from the resolved parameters, result tables, and the
parameters themselves (after the results, folded, with what differs from the defaults first)."""
from __future__ import annotations

import dataclasses
import html
from pathlib import Path

from . import stats
from .config import Config, ConfigError, fields, grid_points, resolve

MODELS = {"lenet_300_100": "LeNet-300-100", "conv4": "Conv-4", "resnet18": "ResNet-18", "resnet34": "ResNet-34",
          "vgg_like": "VGG-like", "vgg19": "VGG-19"}
DATASETS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
SOURCES = {"seed": "the seed repository (github.com/romanaq/dynamic-lottery-tickets)",
           "later_paper": "the later paper (arXiv 2606.12278)",
           "frankle_carbin_2019": "Frankle & Carbin (2019)"}


def markdown_table(header: list[str], rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows])


def _with_paper(value, paper_value, text=str) -> str:
    return text(value) if paper_value is None or paper_value == value else f"{text(value)} (paper: {text(paper_value)})"


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
        how = (f"dynamic pruning to {target} sparsity ({cfg.sparsity_schedule} schedule, the target "
               f"reached in epoch {_reached(cfg)})")
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


def _reached(cfg: Config) -> int:
    """The 1-based epoch in which the target first equals final_sparsity."""
    if cfg.sparsity_schedule == "linear_paper":
        return cfg.prune_end
    if cfg.sparsity_schedule == "oneshot":
        return cfg.prune_start_epoch + 1
    return cfg.prune_end + 1


def heading(cfg, profile: str, params_file: Path) -> str:
    """Markdown: name, profile, generated description, the published number this is compared with."""
    paper = None
    if profile != "paper" and isinstance(cfg, Config):
        try:
            paper = resolve(params_file, "paper")
        except ConfigError:  # a file that only resolves in this profile: no paper values to show
            paper = None
    text = f"**{cfg.name}** ({profile} profile)"
    if isinstance(cfg, Config):
        text += f": {describe(cfg, paper)}"
    if getattr(cfg, "description", ""):
        text += f"\n\n*{cfg.description}*"
    if getattr(cfg, "reported_accuracy", None) is not None:
        text += f"\n\nPublished: **{cfg.reported_accuracy:.2f} %** by {SOURCES.get(cfg.reported_by, 'its source')}."
    if profile != "paper":
        text += (f"\n\nThe {profile} profile runs this recipe on a CPU budget: its numbers show that the experiment "
                 f"runs, learns and lands on its sparsity, and are not comparable with published ones.")
    return text


def parameters_html(cfg) -> str:
    """Every resolved parameter, folded: the ones that differ from the defaults first."""
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in fields(type(cfg)).values()}
    values = cfg.to_dict()

    def cell(v) -> str:
        if v == "" or v == [] or v == {}:
            return "<i>(empty)</i>"
        return f"<code>{html.escape(str(v))}</code>"

    def table(keys) -> str:
        rows = "".join(f"<tr><td><code>{k}</code></td><td>{cell(values[k])}</td><td>{html.escape(fields(type(cfg))[k].metadata['help'])}</td></tr>"
                       for k in keys)
        return f"<table><tr><th>parameter</th><th>value</th><th>meaning</th></tr>{rows}</table>"

    def plain(v):
        return list(v) if isinstance(v, tuple) else v
    changed = [k for k in values if values[k] != plain(defaults[k])]
    return (f"<details><summary>Parameters: {len(changed)} differ from the defaults (click to show)</summary>"
            f"{table(changed)}<details><summary>All {len(values)} parameters</summary>{table(values)}</details>"
            f"</details>")


def runs_markdown(runs: list[dict]) -> str:
    """One row per seed, then the mean with its spread and 95 % interval (no spread for one run)."""
    rows = [(r["seed"], f"{r['test_accuracy']:.2f}",
             f"{r['sparsity']:.4f} ({r['pruned_weights']:,} of {r['prunable_weights']:,} zero)"
             if "pruned_weights" in r else f"{r['sparsity']:.4f}",
             r["epochs"], f"{r['train_seconds']:.0f}", f"{r.get('train_flops', 0):.3g}") for r in runs]
    table = markdown_table(["seed", "test accuracy (%)", "sparsity", "epochs", "train time (s)", "train FLOPs"], rows)
    if len(runs) > 1:
        table += f"\n\n**Test accuracy: {stats.summarize([r['test_accuracy'] for r in runs]).text()}**"
    first = runs[0]
    return table + f"\n\nHardware: {first['hardware']} ({first['device']}); data: {first['data_source']}."


def epoch_log(epochs: int, lines: int = 8):
    """A log for notebooks: every epoch of a short run, about `lines` of a long one (0: none), and each run's
    description once. Every line still goes to the run folder's train.log."""
    every = max(1, epochs // lines) if lines else None
    described = set()

    def log(text: str) -> None:
        if text.startswith("epoch "):
            epoch = int(text.split()[1].split("/")[0])
            if every and (epoch % every == 0 or epoch in (1, epochs)):
                print(text)
        elif " prunable weights; device " in text:  # train()'s description of the run: the same for every level
            head = text.split(":")[0]
            if head not in described:
                described.add(head)
                print(text)
        else:
            print(text)
    return log


def levels_markdown(levels_by_run: dict[str, list[dict]]) -> str:
    """IMP, level by level over seeds: weights remaining, the ticket's accuracy and the re-initialised control's."""
    from .claims import level_table
    first = next(iter(levels_by_run.values()))
    rows = [(row["level"], f"{row['remaining']:.1%}", stats.summarize(row["ticket"]).text(),
             stats.summarize(row["reinit"]).text() if row["reinit"] else "—", first[row["level"]]["cumulative_epochs"])
            for row in level_table(list(levels_by_run.values()))]
    return markdown_table(["level", "weights remaining", "IMP ticket: test accuracy (%)",
                           "same mask re-initialised (%)", "epochs so far"], rows)
