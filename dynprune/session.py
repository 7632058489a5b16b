"""`make experiments`: render what changed, through make, with a log a person can read.

Make stays the scheduler (order, parallel jobs, what is up to date); this wrapper only asks it first what
it would render (a dry run) so every notebook can say `[k/N]`, keeps going past a failed notebook (`-k`)
so the others still render, drops make's own error chatter (each failure already printed its one line),
has the renders start warm (renderserver.py), and ends with a summary: rendered, of those how many trained
and how many only read cached runs, failed, skipped because an input failed, and the wall time.
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import renderserver
from .makedeps import write_deps
from .store import write_atomic

NOTEBOOK_RECIPE = re.compile(r"-m dynprune notebook\s+(?:--launch \S+\s+)?(\S+\.ipynb)")
MAKE_CHATTER = re.compile(r"^make(\[\d+\])?: (\*\*\*|Target .* not remade|Nothing to be done|.*warning)")


def _make(profile: str, launch: str, targets: list[str], *extra: str) -> tuple[list[str], dict]:
    env_free = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")  # we are not a make recipe for this make
    cmd = [os.environ.get("MAKE", "make"), "--no-print-directory", f"PROFILE={profile}", f"LAUNCH={launch}",
           "DEPS_WRITTEN=1", *extra, *targets]  # run_session has just written deps.mk
    return cmd, {k: v for k, v in os.environ.items() if k not in env_free}


def planned(profile: str, launch: str, targets: list[str]) -> list[str]:
    """The notebooks make would render now, in its order (a dry run)."""
    cmd, env = _make(profile, launch, targets, "-n", "-k")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env).stdout
    return [m.group(1) for m in NOTEBOOK_RECIPE.finditer(out)]


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def run_session(profile: str, jobs: int, launch: str, only: str = "") -> int:
    start = time.time()
    # The warm render server starts first: it loads while the dependencies are written and make plans.
    with renderserver.running() if launch == "local" else contextlib.nullcontext({}) as warm_server:
        deps = write_deps(profile)
        targets = re.search(r"^EXPERIMENTS := (.*)$", deps.read_text(), re.M).group(1).split()
        if only:  # make adds what they read
            targets = [t for t in targets if fnmatch.fnmatchcase(t.removeprefix(f"results/{profile}/").removesuffix(".ipynb"), only)]
        todo = planned(profile, launch, targets)
        session = Path("results") / profile / ".make" / "session"
        shutil.rmtree(session, ignore_errors=True)  # this wrapper's own scratch files from the last session
        (session / "outcomes").mkdir(parents=True)
        write_atomic(session / "session.json", json.dumps(dict(planned=len(todo), targets=todo)))
        print(f"{profile} profile: {len(targets)} notebooks, {len(targets) - len(todo)} up to date, {len(todo)} to render"
              f" ({jobs} at a time{', as Slurm jobs' if launch == 'slurm' else ''})", flush=True)
        code = 0
        if todo:
            cmd, env = _make(profile, launch, todo, "-k", f"-j{jobs}", "-s")
            env |= {"DYNPRUNE_SESSION": str(session.absolute())} | warm_server
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            for line in proc.stdout:
                if not MAKE_CHATTER.match(line):
                    sys.stdout.write(line)
                    sys.stdout.flush()
            code = proc.wait()
        outcomes = [json.loads(p.read_text()) for p in sorted((session / "outcomes").glob("*.json"))]
        print(summary(outcomes, len(todo), time.time() - start), flush=True)
        return code


def summary(outcomes: list[dict], planned_count: int, seconds: float) -> str:
    rendered = [o for o in outcomes if o["status"] == "rendered"]
    failed = [o for o in outcomes if o["status"] == "failed"]
    trained = [o for o in rendered if o["trained"]]
    skipped = planned_count - len(outcomes)
    lines = [f"done in {_minutes(seconds)}: {len(rendered)} rendered ({len(trained)} trained "
             f"{sum(o['trained'] for o in rendered)} runs, {sum(o['epochs'] for o in rendered)} epochs in all; "
             f"{len(rendered) - len(trained)} only read finished runs), {len(failed)} failed"
             + (f", {skipped} not started because an input failed" if skipped else "")]
    lines += [f"  FAILED {o['notebook']}: {o['reason']}" for o in failed]
    return "\n".join(lines)
