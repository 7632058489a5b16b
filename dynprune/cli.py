"""Command line: `python -m dynprune <command> ...`; `--help` on any command says what it does.

Every Config field is a flag of `train` and `config` (`final_sparsity` -> `--final-sparsity`), generated from
the dataclass so the flags can never drift from the parameters the notebooks and validation use. `train`
writes the same run-folder layout as the notebooks and goes through the same cache (runs.py).
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import typing
from pathlib import Path

from dynprune import config as C
from dynprune.core.checkpoint import TrainingError
from dynprune.core.data_files import DataError
from dynprune.core.distributed import RankMismatch, launched
from dynprune.foundations.storage import Busy, StoreError
from dynprune.pipeline.render import parse_target, run_notebook
from dynprune.pipeline.schedule import run_session
from dynprune.pipeline.status import print_status


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, a did-you-mean for misspelled flags, and no abbreviations (`--epoch 2`
    is a mistake, not `--epochs 2`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:
            flag = unknown.group(1).split("=")[0]
            near = difflib.get_close_matches(flag, [o for a in self._actions for o in a.option_strings], n=1)
            message = f"unknown flag {flag}" + (f" (did you mean {near[0]}?)" if near else "") + f"; see {self.prog} --help"
        self.exit(2, f"dynprune: error: {message}\n")


def _help(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help strings with %


def _optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _yaml(text: str):
    """A YAML value on the command line, read as strictly as a parameter file (no tags, no duplicate keys)."""
    import yaml
    try:
        return C.parse_yaml(text, "the value")
    except yaml.YAMLError as e:
        why = str(getattr(e, "problem", None) or e).splitlines()[0]
        raise argparse.ArgumentTypeError(f"not valid YAML ({why}); e.g. '{{final_sparsity: [0.5, 0.9]}}'") from None
    except C.ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    except (ValueError, RecursionError) as e:  # an int of over 4,300 digits, nesting deeper than Python's stack
        raise argparse.ArgumentTypeError(f"not a YAML value dynprune can read ({type(e).__name__})") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of notebooks at once; use 1 or more")
    return value


_positive.__name__ = "count"


_yaml.__name__ = "YAML"


class OneBool(argparse.BooleanOptionalAction):
    """--x / --no-x, refused when both are given: which one was meant?"""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None and hasattr(namespace, self.dest):
            parser.error(f"{self.option_strings[0]} and {self.option_strings[1]} both given; give one of them")
        super().__call__(parser, namespace, values, option_string)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("parameters (override the parameter file; see the Config dataclass)")
    for name, f in C.FIELDS.items():
        hint = C.hints(C.Config)[name]
        flag = "--" + name.replace("_", "-")
        kw = dict(dest=name, default=argparse.SUPPRESS, help=_help(f.metadata["help"]))
        if f.metadata["choices"]:
            kw["choices"] = f.metadata["choices"]
        if hint is bool:
            group.add_argument(flag, action=OneBool, **kw)
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


def _training_file(params: Path | None) -> None:
    """`train` runs what the dynamic_pruning notebook runs; other parameter files have their own notebook."""
    if params is None:
        return
    kind = C.kind_of(params)
    if kind in ("lottery", "ticket", "compare", "report"):
        raise C.ConfigError(f"{params} is a {kind} experiment; render it with "
                            f"make results/<profile>/{kind}/{Path(params).stem}.ipynb (train runs single training runs)")


def cmd_train(args) -> None:
    # the training stack (torch, seconds) only for the command that trains: `config` and `--help` answer at once
    from dynprune.pipeline.experiment import run_experiment
    _training_file(args.params)
    C.read_profile(args.profile, C.params_root(args.params))
    overrides = overrides_from(args)
    if launched():  # under torchrun the processes are what they are: the run's identity says so
        overrides["processes"] = int(os.environ["WORLD_SIZE"])
    cfg = C.resolve(args.params, args.profile, overrides)
    if cfg.method in ("imp", "ticket_check"):
        raise C.ConfigError(f"method {cfg.method} is rendered by its notebook (make results/<profile>/"
                            f"{'lottery' if cfg.method == 'imp' else 'ticket'}/<name>.ipynb), not by train")
    out = _out_folder(args.out, Path("results") / "cli" / args.profile / cfg.name)
    quiet = launched() and os.environ.get("RANK", "0") != "0"  # under torchrun, rank 0 speaks for all
    for outcome in run_experiment(cfg, out, args.profile, log=(lambda *_: None) if quiet else print):
        s = outcome.summary
        if s and not all(type(s.get(k)) in (int, float) for k in ("test_accuracy", "sparsity")):
            raise C.ConfigError(f"{outcome.folder}/summary.json is damaged (its test_accuracy or sparsity is not a "
                                f"number); delete it to train the run again")
        if s and not quiet:
            print(f"{outcome.action} {outcome.folder}/ (test accuracy {s['test_accuracy']:.2f}%, "
                  f"sparsity {s['sparsity']:.4f})")


def _out_folder(out: Path | None, default: Path) -> Path:
    """The experiment folder train writes into: an existing folder or a new one, nothing else."""
    if out is None:
        return default
    if str(out).strip() == "" or str(out) == ".":
        raise C.ConfigError("--out is empty; name the experiment folder to write into, e.g. --out runs/sweep")
    if out.exists() and not out.is_dir() or str(out.absolute()).startswith(("/proc/", "/sys/", "/dev/")):
        raise C.ConfigError(f"--out {out} is not a folder dynprune can write runs into; name a new or existing folder")
    return out


def cmd_config(args) -> None:
    C.read_profile(args.profile, C.params_root(args.params))
    print(C.dumps(C.resolve(args.params, args.profile, overrides_from(args))))


def cmd_notebook(args) -> int:
    return 0 if run_notebook(Path(args.output), launch=args.launch, submitted=args.submitted)["status"] == "rendered" else 1


def cmd_status(args) -> None:
    C.read_profile(args.profile, Path.cwd() / "params")  # an unknown profile is one line, not 54 'failed' ones
    print_status(args.profile)


def cmd_export(args) -> None:
    from dynprune.sparse.measurement import export_run  # loads torch: only for the command that exports
    for folder in args.run_folders:
        print(export_run(Path(folder), fp16=args.fp16))


def cmd_experiments(args) -> int:
    if args.target:
        _, rendered = parse_target(Path(args.target))
        args.profile, args.only = rendered.results.name, rendered.key
    return run_session(args.profile, args.jobs, args.launch, args.only)


def cmd_results(args) -> None:
    from dynprune.report.results_md import write_results  # the report's figures stack: only for this command
    write_results(Path(args.out), args.profile, readme=Path(args.readme) if args.readme else None)


def build_parser() -> Parser:
    parser = Parser(prog="python -m dynprune", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train the runs of one experiment (every seed and grid point) into --out",
                       description="Train one experiment's runs, each in <out>/[<grid point>/]seed<k>/; a run that "
                                   "finished before with the same parameters and training code is reused.")
    p.add_argument("--params", type=Path, help="start from this parameter file (YAML), anywhere")
    p.add_argument("--profile", default="paper", help="profile overlay from params/profiles/ (default: paper)")
    p.add_argument("--out", type=Path, help="experiment folder (default: results/cli/<profile>/<name>)")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("config", help="print the fully resolved parameters as JSON: what exactly would run")
    p.add_argument("params", type=Path, nargs="?", help="parameter file (YAML)")
    p.add_argument("--profile", default="paper")
    add_config_flags(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("notebook", help="render one experiment notebook (what the Makefile calls)")
    p.add_argument("output", help="results/<profile>/<notebook>/<name>.ipynb")
    p.add_argument("--launch", choices=("local", "slurm"), default="local", help="where the kernel runs")
    p.add_argument("--submitted", action="store_true", help=argparse.SUPPRESS)  # the Slurm job of a locked render
    p.set_defaults(func=cmd_notebook)

    p = sub.add_parser("experiments", help="render every experiment of a profile that changed, with a readable log")
    p.add_argument("--profile", default="paper")
    p.add_argument("--jobs", type=_positive, default=1, help="notebooks at once")
    p.add_argument("--launch", choices=("local", "slurm"), default="local")
    p.add_argument("--only", default="", help="only the experiments <notebook>/<name> matching these comma-separated patterns, e.g. '*/lenet_*,compare/*'")
    p.add_argument("--target", help="only results/<profile>/<notebook>/<name>.ipynb (and what it reads)")
    p.set_defaults(func=cmd_experiments)

    p = sub.add_parser("status", help="every experiment of a profile: done, running, failed, missing or stale")
    p.add_argument("--profile", default="paper")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("export", help="write a finished run's sparse model (safetensors) and measure it")
    p.add_argument("run_folders", nargs="+", help="run folders (…/seed<k>/)")
    p.add_argument("--fp16", action="store_true", help="also write fp16 values")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("results", help="write RESULTS.md from the finished runs of a profile")
    p.add_argument("--profile", default="paper")
    p.add_argument("--out", default="RESULTS.md")
    p.add_argument("--readme", help="also update the headline block of this README")
    p.set_defaults(func=cmd_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the command's own parser, which knows its flags (and suggests the nearest)
        parser._subparsers._group_actions[0].choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args) or 0
    except (C.ConfigError, DataError, TrainingError, StoreError, Busy, RankMismatch) as e:
        print(f"dynprune: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m dynprune config ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("dynprune: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
