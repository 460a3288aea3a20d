"""Reaching each worker of a `serve --workers N`: the kernel hands each new connection to one
worker or another, so a test opens connections until it holds one per worker, found in /proc.
Plain sockets and HTTP/1.1 by hand, so the test knows which connection each request takes."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support import wait_for


def request(sock: socket.socket, path: str, secret: str) -> int:
    """One GET on a kept-alive connection; its status (the body, a small echo, read whole)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {secret}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, body = answer.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1])


def worker_of(sock: socket.socket, workers: list[int]) -> int:
    """Which worker holds the other end of ``sock``: the server side's inode in /proc/net/tcp,
    then the process with that inode among its open files."""
    server_port, client_port = sock.getpeername()[1], sock.getsockname()[1]
    ends = f"0100007F:{server_port:04X} 0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if f"{fields[1]} {fields[2]}" == ends:
            inode = f"socket:[{fields[9]}]"
            for pid in workers:
                if inode in open_files(pid):
                    return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def open_files(pid: int) -> set[str]:
    """What the process's file descriptors point at (one closed while read is left out)."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found.add(os.readlink(fd))
    return found


def worker_pids(process: subprocess.Popen[str]) -> list[int]:
    """The workers of a running `serve --workers N`, in the order of their pids."""
    found = subprocess.check_output(["pgrep", "-P", str(process.pid)]).split()
    # Its children are the workers and multiprocessing's resource tracker.
    return sorted(int(p) for p in found if b"resource_tracker" not in command_line(int(p)))


def command_line(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@contextlib.contextmanager
def connections_to_each_worker(
    process: subprocess.Popen[str], url: str, secret: str
) -> Iterator[list[socket.socket]]:
    """A kept-alive connection held by each worker of ``process`` (one request served on each
    already), in the order of the workers' pids; closed on leaving."""
    host, port = url.removeprefix("http://").split(":")
    wait_for(lambda: httpx.get(url + "/echo/x", timeout=15).status_code == 401, 15)
    workers = worker_pids(process)
    held: dict[int, socket.socket] = {}
    opened: list[socket.socket] = []
    try:
        while len(held) < len(workers):
            assert len(opened) < 200, f"200 connections reached only workers {list(held)}"
            sock = socket.create_connection((host, int(port)), timeout=15)
            opened.append(sock)
            assert request(sock, "/echo/x", secret) == 200  # accepted, and served
            held.setdefault(worker_of(sock, workers), sock)
        yield [held[pid] for pid in sorted(held)]
    finally:
        for sock in opened:
            sock.close()
