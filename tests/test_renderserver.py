"""The warm render server of `make experiments`: a forwarded command runs as the caller (its folder, terminal and
exit code; its environment: see the make-log test, whose renders read the notebooks DYNPRUNE_NOTEBOOKS names),
only this user can reach it, and without it every render runs in the calling process."""
import stat
from pathlib import Path

import pytest

from dynprune import renderserver

pytestmark = pytest.mark.skipif(not renderserver.SUPPORTED, reason="the render server is used on Linux only")


def test_without_a_server_the_caller_renders_itself(monkeypatch, tmp_path):
    monkeypatch.delenv(renderserver.ADDRESS, raising=False)
    assert renderserver.forward(["notebook", "x.ipynb"]) is None
    monkeypatch.setenv(renderserver.ADDRESS, str(tmp_path / "gone"))  # a session that ended
    assert renderserver.forward(["notebook", "x.ipynb"]) is None


def test_a_forwarded_command_runs_in_the_callers_folder_and_terminal_and_returns_its_exit_code(monkeypatch, tmp_path, capfd):
    (tmp_path / "mine.yaml").write_text("epochs: 7\n")
    monkeypatch.chdir(tmp_path)
    with renderserver.running() as env:
        address = Path(env[renderserver.ADDRESS])
        assert stat.S_IMODE(address.parent.stat().st_mode) == 0o700  # nobody else can reach the socket
        monkeypatch.setenv(renderserver.ADDRESS, str(address))
        assert renderserver.forward(["config", "mine.yaml"]) == 0  # a path relative to the caller's folder
        shown = capfd.readouterr()
        assert '"epochs": 7' in shown.out
        # the exit code and the one-line error come back as the caller's (stderr is the caller's terminal)
        assert renderserver.forward(["notebook", "elsewhere/x.ipynb"]) == 2
        failed = capfd.readouterr()
        assert failed.err.startswith("dynprune: error: notebook target") and "Traceback" not in failed.err
    assert not address.parent.exists()  # the session's server leaves nothing behind


def test_a_socket_path_too_long_to_bind_means_cold_renders_and_one_line(monkeypatch, tmp_path, capfd):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(renderserver.tempfile, "tempdir", str(deep))
    with renderserver.running() as env:
        assert env == {}  # every render then runs in its own process, as without a session
    err = capfd.readouterr().err
    assert err.startswith("dynprune: no warm render server (") and len(err.splitlines()) == 1
