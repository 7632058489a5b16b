"""`make mutate`: mutation testing (mutmut 3) of the modules that decide a run's numbers.

Each module listed in tests/mutation/targets.toml is mutated alone, in its own scratch folder
(build/mutate/<module>/: a copy of dynprune/ and tests/, and pyproject.toml with a [tool.mutmut] section naming
that module and its tests), so a mutant runs only the fast tests mapped to its module, and the project's own
files are never touched. Each run starts that folder afresh; `mutmut show <name>` there shows a mutant.

The module comes from the environment (MODULE, set by make), never from a command line: it must be one of the
files listed in targets.toml, under dynprune/. A surviving mutant must either be killed by a test or be listed
in tests/mutation/equivalents.txt with a reason; the run fails (exit 1) while one is neither.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
TARGETS = PROJECT / "tests" / "mutation" / "targets.toml"
EQUIVALENTS = PROJECT / "tests" / "mutation" / "equivalents.txt"
SCRATCH = PROJECT / "build" / "mutate"


def targets() -> dict[str, list[str]]:
    return {module: entry["tests"] for module, entry in tomllib.loads(TARGETS.read_text())["modules"].items()}


def chosen(all_targets: dict[str, list[str]], module: str) -> list[str]:
    """Every module, or the one MODULE names: a file under dynprune/ that targets.toml lists."""
    if not module:
        return list(all_targets)
    path = (PROJECT / module).resolve()
    if not path.is_relative_to(PROJECT / "dynprune") or not path.is_file():
        sys.exit(f"make mutate: MODULE={module!r} is not a file under dynprune/")
    relative = path.relative_to(PROJECT).as_posix()
    if relative not in all_targets:
        sys.exit(f"make mutate: {relative} has no tests mapped in {TARGETS.relative_to(PROJECT)}; "
                 f"the modules there: {', '.join(all_targets)}")
    return [relative]


def equivalents() -> dict[str, str]:
    """`<mutant name>  <reason>` per line; # starts a comment."""
    out = {}
    for line in EQUIVALENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if line:
            name, _, reason = line.partition(" ")
            if not reason.strip():
                sys.exit(f"{EQUIVALENTS.relative_to(PROJECT)}: {name} has no reason")
            out[name] = reason.strip()
    return out


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def prepare(module: str, tests: list[str]) -> Path:
    folder = SCRATCH / module.removesuffix(".py").replace("/", ".")
    shutil.rmtree(folder, ignore_errors=True)  # every run from scratch: its counts and time are this code's
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("dynprune", "tests", "params", "notebooks"):  # the profiles and notebooks tests read
        shutil.copytree(PROJECT / name, folder / name, ignore=ignore)
    # No [tool.mutmut] in the project's pyproject.toml: this one is the module's.
    (folder / "pyproject.toml").write_text(
        (PROJECT / "pyproject.toml").read_text()
        + "\n[tool.mutmut]\n"
        + 'source_paths = ["dynprune"]\n'
        + 'also_copy = ["params", "notebooks"]\n'
        + f"only_mutate = {toml_list([module])}\n"
        + f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        + 'pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not e2e and not gpu", "-x", "-q"]\n'
        + "use_git_change_detection = false\n"
    )
    return folder


def statuses(folder: Path) -> dict[str, str]:
    """mutant name -> mutmut's status (killed, survived, timeout, no tests, ...), from `mutmut results --all`."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=folder,
                         capture_output=True, text=True, check=True).stdout
    result = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("dynprune."):
            result[name] = status.strip()
    return result


def main() -> int:
    all_targets = targets()
    modules = chosen(all_targets, os.environ.get("MODULE", "").strip())
    known = equivalents()
    rows, open_survivors = [], []
    for module in modules:
        folder = prepare(module, all_targets[module])
        print(f"== {module}: tests {' '.join(all_targets[module])}", flush=True)
        start = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children",
                              os.environ.get("MUTATE_JOBS", "1")], cwd=folder)
        seconds = time.monotonic() - start
        found = statuses(folder)
        killed = sum(s in ("killed", "timeout", "caught by type check", "segfault") for s in found.values())
        equivalent = [n for n, s in found.items() if s != "killed" and n in known]
        unchecked = sum(s == "not checked" for s in found.values())  # a run cut short
        survived = [n for n, s in found.items()
                    if s not in ("killed", "timeout", "caught by type check", "segfault", "not checked")
                    and n not in known]
        open_survivors += [(n, found[n]) for n in survived]
        rows.append((module, len(found), killed, len(equivalent), len(survived), unchecked, seconds, run.returncode))
    print(f"\n{'module':36} {'mutants':>7} {'killed':>6} {'equiv':>5} {'survived':>8} {'unrun':>5} {'kill %':>6} "
          f"{'time':>8}")
    for module, total, killed, equivalent, survived, unchecked, seconds, rc in rows:
        ratio = 100 * killed / max(1, killed + survived)  # over the non-equivalent mutants that ran
        print(f"{module:36} {total:7} {killed:6} {equivalent:5} {survived:8} {unchecked:5} {ratio:6.1f} "
              f"{seconds / 60:6.1f} min" + ("" if rc == 0 else f"  (mutmut exit {rc})"))
    for name, status in open_survivors:
        print(f"not killed and not in equivalents.txt: {name} ({status}); `mutmut show {name}` in its scratch folder")
    return 1 if open_survivors or any(r[5] or r[-1] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
