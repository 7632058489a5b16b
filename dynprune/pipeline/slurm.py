"""Run one command as a Slurm batch job and wait for it: how notebooks render under LAUNCH=slurm.

Each notebook is one `sbatch --wait` call, which blocks until the job ends and exits with the job's exit code:
- make keeps the order. A notebook's recipe returns when its job ends, and it fails the same way it would
  locally, so make's dependencies (comparisons after the runs they read, the report last), its -j limit,
  -k and .DELETE_ON_ERROR work unchanged. We do not write a scheduler of our own.
- Slurm is the engine: where and when a job runs, on what, under which partition and account. We only
  describe the job (the profile's resources) and wait.
- Preemption is handled, not avoided. Jobs are submitted with --requeue, so a preempted job goes back in the
  queue and later re-runs the same command, which resumes from the checkpoints its previous run wrote.
  sbatch --wait keeps waiting across the requeue, and the log is opened in append mode, so it holds every run.

Parameter files come from other people, so every resource value is checked against a strict pattern, and
the command reaches the job's shell only through shlex.join.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,63}")               # partition, account
MEMORY = re.compile(r"[1-9][0-9]{0,9}[KMGT]?")                       # 16G, 500M, 4000 (MB)
TIME = re.compile(r"([0-9]{1,4}-)?[0-9]{1,5}(:[0-9]{1,2}){0,2}|UNLIMITED|INFINITE")  # 24:00:00, 2-00:00:00, 90
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._/+=@-]{0,199}")
EXTRA = re.compile(r"--[a-z][a-z-]*(=[A-Za-z0-9][A-Za-z0-9:._,@+=-]{0,127})?")
# Options sbatch_command sets itself, or that a key of `resources` sets (say which).
RESERVED = {"wait": None, "requeue": None, "no-requeue": None, "parsable": None, "job-name": None,
            "chdir": None, "output": None, "error": None, "input": None, "open-mode": None, "wrap": None,
            "array": None, "comment": None, "gres": "gpus", "gpus": "gpus", "cpus-per-task": "cpus",
            "mem": "mem", "time": "time", "partition": "partition", "account": "account"}


class SlurmError(RuntimeError):
    """One line: what is wrong, and what to do about it."""


def _count(resources: Mapping, key: str, least: int) -> int:
    value = resources[key]
    if type(value) is not int or value < least:               # type(...) is int: True is not a count
        raise SlurmError(f"resources.{key} must be a whole number >= {least}, not {value!r}: fix the profile")
    return value


def _text(resources: Mapping, key: str, pattern: re.Pattern, example: str) -> str:
    value = resources[key]
    if isinstance(value, int) and not isinstance(value, bool) and key == "time":
        raise SlurmError(f"resources.time must be a quoted string like \"24:00:00\", not {value!r} "
                         "(YAML reads an unquoted 24:00:00 as 86400): quote it in the profile")
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise SlurmError(f"resources.{key} must be a string like {example}, not {value!r}: fix the profile")
    return value


def _path(value, what: str) -> str:
    text = str(Path(value).absolute())
    if any(ord(c) < 32 or c == "\\" for c in text):
        raise SlurmError(f"{what} path {text!r} has a control character or backslash: use a plain path")
    return text


def resource_flags(resources: Mapping | None) -> list[str]:
    """sbatch flags for a profile's `resources` (gpus, cpus, mem, time, partition, account, extra)."""
    resources = {} if resources is None else resources
    if not isinstance(resources, Mapping):
        raise SlurmError(f"resources must be a mapping, not {type(resources).__name__}: fix the profile")
    unknown = sorted(set(resources) - {"gpus", "cpus", "mem", "time", "partition", "account", "extra"}, key=str)
    if unknown:
        raise SlurmError(f"unknown resources {unknown}: use gpus, cpus, mem, time, partition, account or extra")
    flags = []
    if "gpus" in resources and _count(resources, "gpus", 0) > 0:
        flags.append(f"--gres=gpu:{resources['gpus']}")
    if "cpus" in resources:
        flags.append(f"--cpus-per-task={_count(resources, 'cpus', 1)}")
    if "mem" in resources:
        flags.append(f"--mem={_text(resources, 'mem', MEMORY, repr('16G'))}")
    if "time" in resources:
        flags.append(f"--time={_text(resources, 'time', TIME, repr('24:00:00'))}")
    for key in ("partition", "account"):
        if key in resources:
            flags.append(f"--{key}={_text(resources, key, WORD, repr('gpu'))}")
    extra = resources.get("extra", [])
    if not isinstance(extra, (list, tuple)):
        raise SlurmError(f"resources.extra must be a list of sbatch options, not {extra!r}: fix the profile")
    for option in extra:
        name = option[2:].split("=")[0] if isinstance(option, str) and option.startswith("--") else None
        if name in RESERVED:
            use = f"set resources.{RESERVED[name]}" if RESERVED[name] else "dynprune sets it itself"
            raise SlurmError(f"resources.extra: {option!r} is not allowed there: {use}")
        if not isinstance(option, str) or not EXTRA.fullmatch(option):
            raise SlurmError(f"resources.extra: {option!r} is not an option like '--qos=high' (one item, "
                             "long form, plain value): fix the profile")
        flags.append(option)
    return flags


def sbatch_command(command: Sequence[str], *, job_name: str, log: Path, cwd: Path, resources: Mapping | None) -> list[str]:
    """The sbatch command line that runs `command` in `cwd` as job `job_name`, appending its output to `log`."""
    if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
        raise SlurmError(f"command must be a non-empty list of strings, not {command!r}")
    if not isinstance(job_name, str) or not JOB_NAME.fullmatch(job_name):
        raise SlurmError(f"job name {job_name!r} is not plain (letters, digits, :._/+=@-): rename the parameter file")
    # --output expands %j, %x, ... in its file name; %% is a literal %.
    output = _path(log, "log").replace("%", "%%")
    return ["sbatch", "--wait", "--requeue", "--parsable", f"--job-name={job_name}", f"--chdir={_path(cwd, 'cwd')}",
            f"--output={output}", "--open-mode=append", *resource_flags(resources),
            "--wrap", "exec " + shlex.join(command)]


def submit_and_wait(command: Sequence[str], *, job_name: str, log: Path, cwd: Path, resources: Mapping | None,
                    env: Mapping[str, str] | None = None) -> int:
    """Run `command` as a Slurm job, block until it ends (across requeues) and return its exit code.

    env is the environment for sbatch, which the job inherits (sbatch exports it all); default: this one's.
    Raises SlurmError when sbatch is missing, refuses the job, or loses its exit code. On Ctrl-C the job
    is cancelled, so that it does not go on writing results that make has given up on."""
    argv = sbatch_command(command, job_name=job_name, log=log, cwd=cwd, resources=resources)
    path = (os.environ if env is None else env).get("PATH", os.defpath)
    sbatch = shutil.which("sbatch", path=path)
    if sbatch is None:
        raise SlurmError("sbatch not found: install Slurm's client tools or run without LAUNCH=slurm")
    # sbatch only prints the job id when it exits (its stdout is a pipe), so a comment finds the job on Ctrl-C.
    tag = f"dynprune-{uuid.uuid4().hex}"
    argv = [sbatch, *argv[1:-2], f"--comment={tag}", *argv[-2:]]
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate()
    except KeyboardInterrupt:
        process.kill()
        process.wait()
        _cancel(tag, sbatch, env)
        raise
    job_id = out.strip().split(";")[0]
    complaints = [line.strip() for line in err.splitlines() if line.strip()]
    if not job_id.isdigit():
        reason = complaints[0] if complaints else f"it exited with code {process.returncode} and no job id"
        raise SlurmError(f"sbatch refused job {job_name}: {reason}")
    if complaints:
        sys.stderr.write("".join(f"{line}\n" for line in complaints))
    if any("no longer found" in line for line in complaints):
        raise SlurmError(f"Slurm job {job_id} ({job_name}) ended, but Slurm purged it before sbatch read its "
                         "exit code: raise MinJobAge in slurm.conf")
    return process.returncode


def _cancel(tag: str, sbatch: str, env: Mapping[str, str] | None) -> None:
    """Cancel this user's job whose comment is `tag`, if it got as far as the queue."""
    folder = Path(sbatch).parent
    try:
        listing = subprocess.run([str(folder / "squeue"), "--me", "--noheader", "--format=%i %k"], env=env,
                                 capture_output=True, text=True, timeout=30).stdout
        for line in listing.splitlines():
            job_id, _, comment = line.strip().partition(" ")
            if comment.strip() == tag:
                subprocess.run([str(folder / "scancel"), job_id], env=env, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pass
