"""Command line: `python -m dynprune {train,config,notebook} ...`.

Every Config field is a flag (`final_sparsity` -> `--final-sparsity`), generated from the dataclass so
the flags can never drift from the parameters the notebooks and validation use.
"""
from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from . import config as C
from .checkpoint import TrainingError
from .data import DataError


def _optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _yaml(text: str):
    import yaml
    return yaml.safe_load(text)


_yaml.__name__ = "YAML"


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("parameters (override the parameter file; see the Config dataclass)")
    for name, f in C.FIELDS.items():
        hint = C._HINTS[name]
        flag = "--" + name.replace("_", "-")
        kw = dict(dest=name, default=argparse.SUPPRESS, help=f.metadata["help"])
        if f.metadata["choices"]:
            kw["choices"] = f.metadata["choices"]
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(hint) is tuple:
            group.add_argument(flag, nargs="*", type=typing.get_args(hint)[0], **kw)
        elif typing.get_origin(hint) is dict:  # --grid '{final_sparsity: [0.5, 0.9]}'
            group.add_argument(flag, type=_yaml, metavar="YAML", **kw)
        elif typing.get_origin(hint) is typing.Union:
            kind = typing.get_args(hint)[0]
            group.add_argument(flag, type=_optional(kind), metavar=f"{kind.__name__.upper()}|none", **kw)
        else:
            group.add_argument(flag, type=hint, **kw)


def overrides_from(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k in C.FIELDS}


def cmd_train(args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from . import plots, records, train

    cfg = C.resolve(args.params, args.profile, overrides_from(args))
    out = Path(args.out or Path("results") / "cli" / cfg.name)
    runs = C.runs_of(cfg)
    for one in runs:  # several seeds or a grid: one folder per run below `out`
        folder = out / one.folder if len(runs) > 1 else out
        run = train.train(one.cfg, checkpoint=folder / "checkpoint.pt")
        summary = records.save_run(run, folder, args.profile, plots.run_figures(run))
        print(f"wrote {folder}/ (test accuracy {summary['test_accuracy']:.2f}%, sparsity {summary['sparsity']:.4f})")


def cmd_config(args) -> None:
    print(C.dumps(C.resolve(args.params, args.profile, overrides_from(args))))


def cmd_notebook(args) -> None:
    from .runner import run_notebook
    run_notebook(Path(args.output))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynprune", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run and write its run folder")
    p.add_argument("--params", type=Path, help="start from this parameter file (YAML)")
    p.add_argument("--profile", default="paper", help="profile overlay from params/profiles/ (default: paper)")
    p.add_argument("--out", type=Path, help="run folder (default: results/cli/<name>)")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("config", help="print the fully resolved parameters as JSON: what exactly would run")
    p.add_argument("params", type=Path, nargs="?", help="parameter file (YAML)")
    p.add_argument("--profile", default="paper")
    add_config_flags(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("notebook", help="render one experiment notebook (what the Makefile calls)")
    p.add_argument("output", help="results/<profile>/<notebook>/<name>.ipynb")
    p.set_defaults(func=cmd_notebook)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (C.ConfigError, DataError, TrainingError) as e:
        print(f"dynprune: error: {e}", file=sys.stderr)
        return 2
    return 0
