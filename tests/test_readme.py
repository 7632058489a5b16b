"""The README is for users: short, and every command in it runs as written (the long ones as a dry run)."""
import re
import shlex
import subprocess

import pytest

from conftest import PROJECT

README = PROJECT / "README.md"


def commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_the_readme_is_short_and_speaks_to_users():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    for journal in ("session", "issue #", "commit ", "we checked", "missed"):
        assert journal not in text.lower()
    assert "make experiments" in text and "make test" in text and "arxiv.org/abs/2606.12278" in text


@pytest.mark.parametrize("command", commands())
@pytest.mark.e2e
def test_every_readme_command_runs_as_written(command, tmp_path):
    argv = shlex.split(command)
    if argv[0] == "export":
        return  # a shell assignment
    env_make = ["make", "--no-print-directory"]
    if argv[0] == "make":
        goal = [a for a in argv[1:] if "=" not in a]
        if goal == ["status"]:
            proc = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True, timeout=300)
        else:  # experiments, test, lab, one notebook: what would run, without running it
            proc = subprocess.run(env_make + ["-n", *argv[1:]], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    else:
        assert argv[:4] == [".venv/bin/python", "-m", "dynprune", argv[3]], command
        if argv[3] == "train":  # the same parser and validation, without the training
            args = argv[4:]
            for flag in ("--out", "--params"):
                if flag in args:
                    i = args.index(flag)
                    args[i:i + 2] = [args[i + 1]] if flag == "--params" else []
            argv = argv[:3] + ["config"] + args
        proc = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
    assert "Traceback" not in proc.stdout + proc.stderr
