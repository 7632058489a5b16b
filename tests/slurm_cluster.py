"""A throwaway single-node Slurm cluster for tests: munged, slurmctld and slurmd, as root, all under one temp dir.

    from slurm_cluster import slurm_cluster      # in a test module; then take `slurm_cluster` as an argument

The fixture skips (saying why) when this is not root, the daemons are not installed, or they do not come up.
It writes nothing outside its temp dir: its own munge key and socket, its own ports (free ones, picked at
start), its own config, state, spool, pid and log files. So it runs beside a real Slurm or munge on the
machine, and twice in a row; teardown cancels its jobs, stops the three daemons it started (by pid) and
deletes the temp dir. The daemons of a test session that was killed are stopped at the next start.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

PREFIX = "dynprune-slurm-"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "sinfo", "squeue", "scancel", "scontrol")


class ClusterUnavailable(RuntimeError):
    """Why no cluster could be started here (the fixture skips with this message)."""


@dataclass
class Cluster:
    root: Path                      # the temp dir holding everything
    conf: Path                      # slurm.conf, also in env["SLURM_CONF"]
    node: str
    env: dict[str, str]             # os.environ + SLURM_CONF: pass to subprocesses and to submit_and_wait
    bring_up_s: float = 0.0
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command (sinfo, squeue, scontrol ...) against this cluster; output as text."""
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30, check=check)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_leftovers(parent: Path) -> None:
    """Stop the daemons of earlier clusters whose test session died without tearing them down."""
    for record in parent.glob(PREFIX + "*/pids.json"):
        try:
            pids = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if _alive(pids.get("owner", 0)):
            continue                                   # a live session's cluster: not ours to touch
        for name in reversed(DAEMONS):
            pid = pids.get(name)
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except (OSError, TypeError):
                continue
            if str(record.parent) in cmdline:          # the pid still names that cluster's files
                os.kill(pid, signal.SIGTERM)


def _memory_mb() -> int:
    """A bit under the memory free now, so slurmd never finds less than configured."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return max(256, int(int(line.split()[1]) / 1024 * 0.9))
    return 1024


def _config(root: Path, node: str, ports: list[int]) -> str:
    cpus = len(os.sched_getaffinity(0))
    # MinJobAge=5 keeps sbatch --wait polling every 2 s (it polls 4x less often while MinJobAge/2 exceeds
    # its interval) while a finished job's record (and exit code) outlives two polls.
    return f"""\
ClusterName=dynprune-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=5
KillWait=2
MailProg=/bin/true
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _start(cluster: Cluster, name: str, argv: list[str]) -> None:
    log = open(cluster.root / "log" / f"{name}.out", "ab")
    cluster.processes[name] = subprocess.Popen(argv, env=cluster.env, stdin=subprocess.DEVNULL, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    pids = {"owner": os.getpid()} | {n: p.pid for n, p in cluster.processes.items()}
    (cluster.root / "pids.json").write_text(json.dumps(pids))


def _last_words(cluster: Cluster, name: str) -> str:
    """The daemon's last two log lines (the cause, then "initialization failed"), from its log or its output."""
    for path in (cluster.root / "log" / f"{name}.log", cluster.root / "log" / f"{name}.out"):
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        if lines:
            return " | ".join(re.sub(r"^\[[^]]*\] ", "", line.strip()) for line in lines[-2:])
    return "(it logged nothing)"


def _wait_until_idle(cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = "no answer"
    while time.monotonic() < deadline:
        for name, process in cluster.processes.items():
            if process.poll() is not None:
                raise ClusterUnavailable(f"{name} exited with code {process.returncode}: {_last_words(cluster, name)}")
        result = cluster.run("sinfo", "--noheader", "--nodes", cluster.node, "--format=%t", check=False)
        state = result.stdout.strip() or (result.stderr.strip().splitlines() or ["no answer"])[-1]
        if state == "idle":
            return
        time.sleep(0.25)
    raise ClusterUnavailable(f"node {cluster.node} not idle after {timeout:.0f} s (sinfo: {state}); "
                             f"slurmctld: {_last_words(cluster, 'slurmctld')}; slurmd: {_last_words(cluster, 'slurmd')}")


def _stop(cluster: Cluster) -> None:
    if cluster.processes.get("slurmctld") and cluster.processes["slurmctld"].poll() is None:
        cluster.run("scancel", "--user=root", check=False)       # this cluster's jobs only
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            queued = cluster.run("squeue", "--noheader", "--format=%i", check=False)
            if queued.returncode or not queued.stdout.strip():
                break
            time.sleep(0.25)
    for name in reversed(DAEMONS):
        process = cluster.processes.get(name)
        if process is None or process.poll() is not None:
            continue
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_cluster(timeout: float = 60.0) -> Iterator[Cluster]:
    """Start the cluster, yield it once its node is idle, stop it and delete its temp dir afterwards.

    Raises ClusterUnavailable (after stopping whatever it started) when it cannot run here."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("the test Slurm cluster runs its daemons as root; this is not root")
    missing = [tool for tool in DAEMONS + CLIENTS if shutil.which(tool) is None]
    if missing:
        raise ClusterUnavailable(f"{', '.join(missing)} not found: apt-get install slurmctld slurmd slurm-client munge")
    parent = Path(tempfile.gettempdir())
    if len(str(parent)) > 60:                          # munge's socket path must stay under ~100 bytes
        parent = Path("/tmp")
    _stop_leftovers(parent)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    root.chmod(0o755)
    node = socket.gethostname().split(".")[0]
    cluster = Cluster(root, root / "slurm.conf", node, os.environ | {"SLURM_CONF": str(root / "slurm.conf")})
    try:
        for sub in ("munge", "state", "spool", "log"):
            (root / sub).mkdir()
        (root / "munge").chmod(0o711)                  # clients need to reach the socket, not list the dir
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        cluster.conf.write_text(_config(root, node, _free_ports(2)))
        munge = root / "munge"
        _start(cluster, "munged", ["munged", "--foreground", "--force", f"--socket={munge}/munge.socket",
                                   f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                                   f"--seed-file={munge}/munged.seed", f"--log-file={root}/log/munged.log"])
        deadline = time.monotonic() + 10
        while not (munge / "munge.socket").exists():
            if cluster.processes["munged"].poll() is not None or time.monotonic() > deadline:
                raise ClusterUnavailable(f"munged did not start: {_last_words(cluster, 'munged')}")
            time.sleep(0.05)
        _start(cluster, "slurmctld", ["slurmctld", "-D", "-f", str(cluster.conf)])
        _start(cluster, "slurmd", ["slurmd", "-D", "-f", str(cluster.conf), "-N", node])
        _wait_until_idle(cluster, timeout)
        cluster.bring_up_s = time.monotonic() - started
        yield cluster
    finally:
        _stop(cluster)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[Cluster]:
    """A running single-node cluster for the tests of one module (skips, saying why, where there can be none)."""
    try:
        with running_cluster() as cluster:
            yield cluster
    except ClusterUnavailable as problem:
        pytest.skip(f"no test Slurm cluster: {problem}")
