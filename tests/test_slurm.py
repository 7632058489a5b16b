"""LAUNCH=slurm: the sbatch command line (no cluster needed), then real jobs through a throwaway local cluster."""
from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dynprune.pipeline.slurm import SlurmError, sbatch_command, submit_and_wait
from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)

PY = sys.executable


def command_for(resources, **names):
    return sbatch_command(["python", "-m", "dynprune", "notebook", "results/quick/x.ipynb"],
                          job_name=names.get("job_name", "dynprune:quick/dynamic_pruning/x"),
                          log=names.get("log", Path("/r/logs/x.slurm.log")), cwd=Path("/r"), resources=resources)


def test_sbatch_command_flags():
    argv = command_for({"gpus": 2, "cpus": 8, "mem": "16G", "time": "24:00:00", "partition": "gpu",
                        "account": "lab-1", "extra": ["--qos=high", "--exclusive", "--signal=B:USR1@60"]})
    assert argv == ["sbatch", "--wait", "--requeue", "--parsable", "--job-name=dynprune:quick/dynamic_pruning/x",
                    "--chdir=/r", "--output=/r/logs/x.slurm.log", "--open-mode=append", "--gres=gpu:2",
                    "--cpus-per-task=8", "--mem=16G", "--time=24:00:00", "--partition=gpu", "--account=lab-1",
                    "--qos=high", "--exclusive", "--signal=B:USR1@60",
                    "--wrap", "exec python -m dynprune notebook results/quick/x.ipynb"]
    assert "--gres=gpu:0" not in command_for({"gpus": 0}) and command_for(None) == command_for({})
    assert command_for({"time": "2-00:00:00"})[-3] == "--time=2-00:00:00"


def test_sbatch_command_quotes_the_command_and_escapes_log_patterns():
    hostile = [PY, "-c", "print('a b'); import os", "$(touch /tmp/x)", "a;b", "new\nline"]
    argv = sbatch_command(hostile, job_name="j", log=Path("/r/100%_%j.log"), cwd=Path("/r"), resources={})
    assert argv[-2] == "--wrap" and shlex.split(argv[-1]) == ["exec", *hostile]
    assert "--output=/r/100%%_%%j.log" in argv


@pytest.mark.parametrize("resources, names", [
    ({"mem": "1G;rm -rf /"}, "resources.mem"),
    ({"mem": 16000}, "resources.mem"),
    ({"partition": "$(x)"}, "resources.partition"),
    ({"partition": "-p"}, "resources.partition"),
    ({"account": "a b"}, "resources.account"),
    ({"gpus": "2"}, "resources.gpus"),
    ({"gpus": True}, "resources.gpus"),
    ({"gpus": -1}, "resources.gpus"),
    ({"cpus": 0}, "resources.cpus"),
    ({"cpus": 2.0}, "resources.cpus"),
    ({"time": 86400}, "quote it"),
    ({"time": "1 day"}, "resources.time"),
    ({"gpu": 1}, "unknown resources"),
    ({"extra": "--qos=high"}, "resources.extra"),
    ({"extra": ["-p gpu"]}, "resources.extra"),
    ({"extra": ["--qos=high;reboot"]}, "resources.extra"),
    ({"extra": ["--wrap=id"]}, "not allowed"),
    ({"extra": ["--output=/etc/passwd"]}, "not allowed"),
    ({"extra": ["--mem=1G"]}, "resources.mem"),
    (["gpus"], "mapping"),
])
def test_hostile_resources_are_refused_in_one_line(resources, names):
    with pytest.raises(SlurmError) as refused:
        command_for(resources)
    assert names in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("names", [{"job_name": "a b"}, {"job_name": "$(x)"}, {"job_name": ""},
                                   {"log": Path("/r/a\nb.log")}, {"log": Path("/r/a\\b.log")}])
def test_hostile_names_are_refused_in_one_line(names):
    with pytest.raises(SlurmError) as refused:
        command_for({}, **names)
    assert "\n" not in str(refused.value)


def fake_sbatch(folder: Path, script: str) -> dict[str, str]:
    """An environment whose only sbatch is `script` (it records its arguments in folder/argv)."""
    folder.mkdir()
    (folder / "sbatch").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {folder}/argv\n{script}\n")
    (folder / "sbatch").chmod(0o755)
    return {"PATH": f"{folder}:/usr/bin:/bin"}


def test_submit_and_wait_without_a_cluster(tmp_path):
    job = dict(job_name="j", log=tmp_path / "logs" / "j.log", cwd=tmp_path, resources={})
    with pytest.raises(SlurmError, match="^sbatch not found: install Slurm's client tools or run without LAUNCH=slurm$"):
        submit_and_wait(["true"], env={"PATH": str(tmp_path)}, **job)
    env = fake_sbatch(tmp_path / "refuses", "echo 'sbatch: error: invalid partition specified: gpu' >&2\n"
                                            "echo 'sbatch: error: Batch job submission failed' >&2; exit 1")
    with pytest.raises(SlurmError, match=r"^sbatch refused job j: sbatch: error: invalid partition specified: gpu$"):
        submit_and_wait(["true"], env=env, **job)
    env = fake_sbatch(tmp_path / "fails", "echo 42; exit 3")           # the job's exit code is sbatch's
    assert submit_and_wait(["true"], env=env, **job) == 3
    assert (tmp_path / "logs").is_dir()
    assert any(a.startswith("--comment=dynprune-") for a in (tmp_path / "fails" / "argv").read_text().splitlines())
    env = fake_sbatch(tmp_path / "purged", "echo 42; echo 'sbatch: error: Job 42 no longer found and exit code "
                                           "not found' >&2; exit 0")
    with pytest.raises(SlurmError, match="MinJobAge"):
        submit_and_wait(["true"], env=env, **job)


# With the cluster: every job below takes about 2 s, as sbatch --wait polls every 2 s there.

def job(cluster, tmp_path, name, code, resources=None):
    return submit_and_wait([PY, "-c", code], job_name=f"dynprune:test/{name}", log=tmp_path / "logs" / f"{name}.log",
                           cwd=tmp_path, resources=resources or {}, env=cluster.env)


@pytest.mark.slurm
def test_a_job_runs_and_logs(slurm_cluster, tmp_path):
    code = "import os, pathlib; pathlib.Path('out.txt').write_text(os.environ['SLURM_JOB_ID']); print('hello')"
    assert job(slurm_cluster, tmp_path, "ok", code, {"cpus": 1, "time": "5:00"}) == 0
    assert (tmp_path / "out.txt").read_text().isdigit()               # it ran in cwd, under Slurm
    assert "hello" in (tmp_path / "logs" / "ok.log").read_text()


@pytest.mark.slurm
def test_a_failing_job_returns_its_exit_code(slurm_cluster, tmp_path):
    assert job(slurm_cluster, tmp_path, "fails", "import sys; print('bad'); sys.exit(3)") == 3
    assert "bad" in (tmp_path / "logs" / "fails.log").read_text()


@pytest.mark.slurm
def test_a_refused_job_says_why(slurm_cluster, tmp_path):
    with pytest.raises(SlurmError, match="^sbatch refused job dynprune:test/nowhere: .*[Pp]artition"):
        job(slurm_cluster, tmp_path, "nowhere", "pass", {"partition": "nosuch"})


@pytest.mark.slurm
def test_two_jobs_at_once(slurm_cluster, tmp_path):
    code = "import pathlib, time; time.sleep(1); pathlib.Path('{}').touch()"
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda n: job(slurm_cluster, tmp_path, n, code.format(n)), ["a", "b"]))
    assert codes == [0, 0] and (tmp_path / "a").exists() and (tmp_path / "b").exists()


def squeue(cluster, name):
    return cluster.run("squeue", "--noheader", f"--name={name}", "--format=%i %T").stdout.split()


def wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return found


@pytest.mark.slurm
def test_a_requeued_job_runs_again_and_the_wait_goes_on(slurm_cluster, tmp_path):
    """What preemption with requeue does: the same command runs again, appending to the same log."""
    code = ("import pathlib, time\nflag = pathlib.Path('first-run-started')\n"
            "if flag.exists(): print('second run')\nelse: flag.touch(); print('first run', flush=True); time.sleep(60)")
    result = {}
    waiting = threading.Thread(target=lambda: result.update(code=job(slurm_cluster, tmp_path, "requeue", code)))
    waiting.start()
    try:
        name = "dynprune:test/requeue"
        job_id = wait_for(lambda: (tmp_path / "first-run-started").exists() and squeue(slurm_cluster, name)[0])
        slurm_cluster.run("scontrol", "requeue", job_id)
        # Slurm holds a requeued job back for a couple of minutes (its BeginTime); let it start at once.
        wait_for(lambda: squeue(slurm_cluster, name)[1:] == ["PENDING"])
        wait_for(lambda: slurm_cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now",
                                           check=False).returncode == 0)
    finally:
        waiting.join(60)
    assert result == {"code": 0}
    log = (tmp_path / "logs" / "requeue.log").read_text()
    assert "first run" in log and "second run" in log and "REQUEUE" in log


@pytest.mark.slurm
def test_ctrl_c_cancels_the_job(slurm_cluster, tmp_path):
    """make interrupted: the job must not go on writing results make has given up on."""
    # Ctrl-C as a terminal sends it: Python's own handler, whatever the test runner's worker set for SIGINT
    waiter = (f"import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              f"from dynprune.pipeline.slurm import submit_and_wait; from pathlib import Path\n"
              f"submit_and_wait([{PY!r}, '-c', 'import time; time.sleep(60)'], job_name='dynprune:test/interrupted', "
              f"log=Path({str(tmp_path / 'i.log')!r}), cwd=Path({str(tmp_path)!r}), resources={{}})")
    process = subprocess.Popen([PY, "-c", waiter], env=slurm_cluster.env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: squeue(slurm_cluster, "dynprune:test/interrupted")[1:] == ["RUNNING"])
        process.send_signal(signal.SIGINT)
        assert "KeyboardInterrupt" in process.communicate(timeout=90)[1]
        wait_for(lambda: not squeue(slurm_cluster, "dynprune:test/interrupted"), seconds=15)
    finally:
        process.kill()


@pytest.mark.slurm
def test_make_experiments_renders_notebooks_as_slurm_jobs_in_dependency_order(slurm_cluster, tmp_path):
    """LAUNCH=slurm: every notebook a job of its own (sbatch --wait), make keeps the order, logs under logs/."""
    import json
    import os
    import shutil
    from conftest import PROJECT, make_mnist
    root = tmp_path / "project"
    (root / "params" / "dynamic_pruning").mkdir(parents=True)
    (root / "params" / "compare").mkdir()
    (root / "params" / "profiles").mkdir()
    (root / "params" / "profiles" / "quick.yaml").write_text(
        'resources: {cpus: 1, mem: "1G", time: "00:10:00"}\ndefault: {threads: 1}\n')
    tiny = ("dataset: mnist\nmodel: lenet_300_100\ninit: kaiming_fan_in\nwidth: 0.25\nepochs: 2\nbatch_size: 32\n"
            "lr: 0.02\nfinal_sparsity: {s}\ndownload: false\n")
    (root / "params" / "dynamic_pruning" / "a.yaml").write_text(tiny.format(s=0.5))
    (root / "params" / "compare" / "of_a.yaml").write_text("inputs: [dynamic_pruning/a]\n")  # waits for a's job
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(PROJECT / name, root / name)
        os.utime(root / name, (0, 0))
    (root / ".venv").symlink_to(PROJECT / ".venv")
    make_mnist(tmp_path / "data")
    env = {k: v for k, v in slurm_cluster.env.items() if not k.startswith("MAKE")} | {
        "DYNPRUNE_DATA": str(tmp_path / "data"), "DYNPRUNE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["make", "--no-print-directory", "experiments", "PROFILE=quick", "LAUNCH=slurm", "JOBS=2"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "as Slurm jobs" in proc.stdout and "2 rendered" in proc.stdout
    logs = root / "results" / "quick" / "logs"
    for key in ("dynamic_pruning/a", "compare/of_a"):
        assert (root / "results" / "quick" / f"{key}.ipynb").is_file()
        assert f"{key} done in" in (logs / f"{key}.slurm.log").read_text()  # the job's own output, from the node
        assert "rendering" in (logs / f"{key}.log").read_text()
    started = {key: (root / "results" / "quick" / f"{key}.ipynb").stat().st_mtime
               for key in ("dynamic_pruning/a", "compare/of_a")}
    assert started["compare/of_a"] > started["dynamic_pruning/a"]
    summary = json.loads((root / "results/quick/dynamic_pruning/a/seed42/summary.json").read_text())
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-4)
