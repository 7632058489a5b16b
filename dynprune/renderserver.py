"""Start every render of a `make experiments` session warm: one process loads the rendering machinery once
and forks a child per notebook.

Before its own work a render spent about 1.8 s of CPU (measured on a 2-core EPYC): 1.1 s importing
papermill, nbconvert and jupytext, and 0.7 s in its first HTML export (templates compiled, the
syntax-highlighting and CSS-selector regular expressions built) — nearly a third of re-rendering a notebook
whose runs are cached, 6 s. During a session, `running()` starts this server; each `python -m dynprune
notebook` that make starts hands its command line, working folder, environment and terminal to it
(`forward`) and exits with the child's exit code. The child is a process of its own, as before: its
environment, folder, output and exit code are the caller's, and a crash touches no other render. Without
a server (one `make results/...ipynb`, a Slurm job, not Linux) nothing changes: the render runs in the
calling process.

Only this user can reach the server: its socket lies in a folder only they can enter, and it checks the
caller's user id. Requests are JSON; nothing is unpickled.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ADDRESS = "DYNPRUNE_RENDER_SERVER"  # the variable that names the socket, for the renders of one session
SUPPORTED = sys.platform == "linux"  # fork, SCM_RIGHTS and SO_PEERCRED: tested here only on Linux


@contextlib.contextmanager
def running():
    """A warm render server for the block: yields the environment that sends renders to it ({} where none
    could start: then every render runs in its own process, as without one)."""
    if not SUPPORTED:
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="dynprune-render-"))  # mode 0700
    address = folder / "socket"
    server = subprocess.Popen([sys.executable, "-m", "dynprune.renderserver", str(address)])
    try:
        deadline = time.time() + 10
        while not address.exists() and server.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        yield {ADDRESS: str(address)} if address.exists() else {}
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def forward(argv: list[str]) -> int | None:
    """Have the session's server run `python -m dynprune <argv>` for this process: its exit code, or None
    where no server answers (then the caller renders itself)."""
    address = os.environ.get(ADDRESS)
    if not address or not SUPPORTED:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(address)
        except OSError:
            return None
        request = json.dumps(dict(argv=argv, cwd=os.getcwd(), env=dict(os.environ))).encode()
        sys.stdout.flush()
        sys.stderr.flush()
        socket.send_fds(conn, [request], [0, 1, 2])
        conn.shutdown(socket.SHUT_WR)
        reply = b"".join(iter(lambda: conn.recv(64), b"")).decode().strip()
    if reply.lstrip("-").isdigit():
        return int(reply)
    print(f"dynprune: the render of {' '.join(argv[1:])} ended without an exit code (killed?)", file=sys.stderr)
    return 1


def serve(address: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address)  # first, so that the session sees the server at once; callers wait in the backlog
    except OSError as e:  # e.g. a TMPDIR so deep that the socket's path is too long
        print(f"dynprune: no warm render server ({e}); every notebook starts cold", file=sys.stderr)
        return
    try:
        listener.listen(64)
        _serve(listener)
    finally:  # also when the whole session is killed: no socket folder is left behind
        shutil.rmtree(Path(address).parent, ignore_errors=True)


def _serve(listener: socket.socket) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from .runner import warm_up
    try:
        warm_up()
    except Exception as e:  # the renders still run, each loading what it needs itself
        print(f"dynprune: the render server could not warm up ({type(e).__name__}: {e}); renders start cold",
              file=sys.stderr)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    session = os.getppid()
    listener.settimeout(1.0)
    while os.getppid() == session:  # a session that died leaves no server behind
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            if _peer_uid(conn) == os.getuid() and os.fork() == 0:
                listener.close()
                _child(conn)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _child(conn: socket.socket) -> None:
    """Become the caller (its terminal, folder and environment), run its command, send back the exit code."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the render waits for its own kernel
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        conn.setblocking(True)
        message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        message += b"".join(iter(lambda: conn.recv(1 << 16), b""))
        request = json.loads(message)
        for fd, std in zip(fds, (0, 1, 2)):
            os.dup2(fd, std)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({k: v for k, v in request["env"].items() if k != ADDRESS})
        from .cli import main
        code = main(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(f"{code}\n".encode())
        os._exit(code)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in make reaches the whole session: end quietly
        serve(sys.argv[1])
