"""`[server] pid_file`: written by the `serve` process that holds the ports, read by `gateway
reload` and by a second `serve` that finds the port taken.

A pid file outlives a gateway killed with SIGKILL (or a machine that crashed), and its number is
given to some other program sooner or later: a pid file is believed only while the process it
names runs `serve`, so `gateway reload` never sends SIGHUP (which ends most programs) to
another program.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def running(path: Path | None) -> int | None:
    """The gateway a pid file names, running (not this process), or None."""
    if path is None:
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except PermissionError:
        return pid if serves(pid) else None  # alive, another user's
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and serves(pid) else None


def serves(pid: int) -> bool:
    """Whether the process runs `gateway serve` (``serve`` among its arguments), where /proc
    tells; where it does not, a live process is taken at its word."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # gone since, or no /proc on this system
    except OSError:
        return True
    return b"serve" in arguments


@contextlib.contextmanager
def written(path: Path | None) -> Iterator[None]:
    """This process's id in ``path`` while it serves, for `gateway reload`. Written once the
    ports are bound (the file belongs to the process holding them), whole or not at all
    (renamed into place), and removed on exit only while it still names this process."""
    if path is None:
        yield
        return
    mine = f"{os.getpid()}\n"
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        partial.write_text(mine)
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise SystemExit(
            f"gateway: cannot write the pid file {path} ({exc.strerror or exc}); point "
            "[server] pid_file at a file in a directory that exists and that the gateway's user "
            'may write, or set it to "" for none'
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text() == mine:
                path.unlink()
