"""A PgBouncer of a test's own in transaction mode, in front of a PostgreSQL server, in a
temporary directory (Debian's `pgbouncer`, switching to the `postgres` system user when the tests
run as root: PgBouncer refuses to run as root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import unavailable


def _binary() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )


class PgBouncer:
    """PgBouncer on an ephemeral port, every database of ``host:port`` behind it, a server pool
    of ``pool_size`` connections per database: fewer than the clients, so transactions of one
    client land on different server connections."""

    def __init__(self, host: str, port: int, pool_size: int = 2) -> None:
        binary = _binary()
        if binary is None:
            unavailable("no pgbouncer binary (apt-get install pgbouncer)")
        self.dir = Path(tempfile.mkdtemp(prefix="gw-pgbouncer-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={host} port={port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/users.txt
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
server_reset_query =
logfile = {self.dir}/log
pidfile = {self.dir}/pid
"""
        )
        command = [binary, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            for name in ("users.txt", "pgbouncer.ini"):
                shutil.chown(self.dir / name, "postgres", "postgres")
            # Its own switch rather than runuser, so a signal reaches it and not a wrapper that
            # waits seconds for its child.
            command = [binary, "-u", "postgres", str(self.dir / "pgbouncer.ini")]
        # Its log is the file; what it also writes to stderr would fill an unread pipe and
        # stop it.
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"pgbouncer did not start: {self.log()}")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # PgBouncer: an immediate shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
