"""A PostgreSQL server of a test's own, in a temporary directory, for fault tests that stop and
kill it (the shared one is never touched). Made with Debian's server binaries (initdb, pg_ctl),
run as the `postgres` system user when the tests run as root: PostgreSQL refuses to run as root."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import unavailable


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PgServer:
    def __init__(self, primary: PgServer | None = None) -> None:
        """A new cluster (initdb), or with ``primary`` a streaming standby of that running
        server (pg_basebackup; ``standby.signal`` and its ``primary_conninfo`` written)."""
        bin_dir = _binaries()
        if bin_dir is None:
            unavailable("no PostgreSQL server binaries (apt-get install postgresql)")
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        self.data = self.dir / "data"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        if primary is None:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        else:
            self._run(
                "pg_basebackup",
                *("-D", str(self.data), "-h", "127.0.0.1", "-p", str(primary.port)),
                *("-U", "postgres", "-X", "stream", "-R", "--no-sync", "-c", "fast"),
            )

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self, max_connections: int = 50, *settings: str) -> None:
        """Start (again); ``settings``: more ``name=value`` for the server's command line."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections={max_connections}"
        ) + "".join(f" -c {setting}" for setting in settings)
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def promote(self) -> None:
        """A standby becomes the primary (returns once it accepts writes)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend, as a crash of the machine would."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        subprocess.run(["pkill", "-KILL", "-f", f"postgres: .*{self.port}|-p {self.port}"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def processes(self) -> list[int]:
        """The postmaster and every process it started."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return [pid, *(int(child) for child in children.stdout.split())]

    def freeze(self) -> list[int]:
        """SIGSTOP the server: it takes TCP connections (the kernel does) and answers nothing, as
        a machine that hangs or a network that drops packets would. ``thaw`` what it returns."""
        frozen = self.processes()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        return frozen

    @staticmethod
    def thaw(frozen: list[int]) -> None:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
