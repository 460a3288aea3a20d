"""Row 11 alone, quickly: the WebSocket echo through the gateway against the same echo directly,
round by round, and the ratio of each round.

    .venv/bin/python bench/ws_ratio.py [--seconds 4] [--rounds 6] [--tree PATH ...] [--nginx]

Starts the row's echo upstream (`bench/ws_echo.py`) and, for this tree and each ``--tree``
given (another checkout, imported from it: the tree before a change), a gateway as `make bench`
runs it (`bench/gateway_server.py`, one worker, a `websocket = true` route, access log off)
over a fresh store with one key; with ``--nginx``, nginx proxying the WebSockets too (one
worker): what any third process in the path costs. Each round runs row 11's client
(`run.websocket_echo`: 8 connections, one 64-byte text message in flight each) directly, then
through each gateway, the order turned each round. Prints each round and the medians:
messages per second, the ratio to the direct run of the same round (this machine's speed moves
from one minute to the next; within a round it moves less), and the gateway's CPU time per
message (user and system, from /proc), which other work on the machine moves less than it
moves the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import run as bench

HERE = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway(processes: bench.Processes, tree: Path, work: Path, echo: str) -> tuple[str, str, int]:
    """A gateway of ``tree`` over a store of its own: its address, a key's secret, its pid."""
    work.mkdir()
    config = work / "gateway.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
workers = 1
[admin]
listen = ""
[store]
path = "{work / "store.db"}"
[log]
access = "off"
[webhooks]
deliver = false
[[routes]]
prefix = "/ws"
upstream = "{echo}"
websocket = true
"""
    )
    env = dict(os.environ, PYTHONPATH=str(tree))
    init = subprocess.run(
        [bench.PYTHON, "-m", "gatewaycli", "--config", str(config), "init", "--json"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    secret = json.loads(init.stdout)["secret_key"]
    process = subprocess.Popen(
        [bench.PYTHON, str(tree / "bench" / "gateway_server.py"), str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tree,
        env=env,
    )
    processes.started.append(process)
    assert process.stdout is not None
    address = process.stdout.readline().strip()
    process.stdout.readline()  # the stats port
    if not address:
        raise RuntimeError(f"the gateway of {tree} did not start")
    return address.replace("http://", "ws://") + "/ws/room", secret, process.pid


def nginx(processes: bench.Processes, work: Path, echo: str) -> str:
    """nginx in front of the echo, passing WebSockets (its documented map of Upgrade)."""
    port = bench.free_port()
    servers = f"""
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {echo};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
        }}
    }}"""
    conf = bench.nginx_conf(work, "ws-nginx", servers)
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    processes.start(nginx_bin, "-e", str(work / "ws-nginx.err"), "-c", str(conf))
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline:
            raise RuntimeError("nginx did not start")
        time.sleep(0.05)
    return f"ws://127.0.0.1:{port}/room"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tree", type=Path, action="append", default=[])
    parser.add_argument("--nginx", action="store_true", help="nginx as a floor, if installed")
    args = parser.parse_args()
    trees = [HERE, *(tree.resolve() for tree in args.tree)]
    processes = bench.Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="ws-ratio-") as tmp:
            _, (echo,) = processes.start(
                bench.PYTHON, str(HERE / "bench" / "ws_echo.py"), "127.0.0.1:0", lines=1
            )
            direct = echo.replace("http://", "ws://") + "/room"
            gateways = [
                gateway(processes, tree, Path(tmp) / f"tree{i}", echo)
                for i, tree in enumerate(trees)
            ]
            names = ["direct", *(str(tree) for tree in trees)]
            if args.nginx:
                names.append("nginx")
                gateways.append((nginx(processes, Path(tmp), echo), "", -1))
            runs: dict[str, list[float]] = {name: [] for name in names}
            ratios: dict[str, list[float]] = {name: [] for name in names[1:]}
            cpu: dict[str, list[float]] = {name: [] for name in names[1:]}
            for round_ in range(args.rounds):
                order = list(zip(names, [(direct, "", 0), *gateways], strict=True))
                if round_ % 2:
                    order.reverse()
                measured = {}
                for name, (url, secret, pid) in order:
                    headers = {"X-Auth-Token": secret} if secret else {}
                    before = cpu_seconds(pid) if pid > 0 else 0.0
                    measured[name] = bench.websocket_echo(url, headers, args.seconds)
                    runs[name].append(measured[name])
                    if pid > 0:  # the messages of the run: its rate times its seconds
                        used = cpu_seconds(pid) - before
                        cpu[name].append(used / (measured[name] * args.seconds) * 1e6)
                for name in names[1:]:
                    ratios[name].append(measured[name] / measured["direct"])
                print(
                    f"round {round_ + 1}: direct {measured['direct']:,.0f}/s; "
                    + "; ".join(
                        f"{name} {measured[name]:,.0f}/s ({ratios[name][-1]:.2f}"
                        + (f", {cpu[name][-1]:.1f} us CPU a message)" if cpu[name] else ")")
                        for name in names[1:]
                    ),
                    flush=True,
                )
            print(f"direct: median {statistics.median(runs['direct']):,.0f} messages/s")
            for name in names[1:]:
                print(
                    f"{name}: median {statistics.median(runs[name]):,.0f} messages/s, "
                    f"median ratio to direct {statistics.median(ratios[name]):.2f} "
                    f"(rounds {min(ratios[name]):.2f}-{max(ratios[name]):.2f})"
                    + (
                        f", {statistics.median(cpu[name]):.1f} us of the gateway's CPU a message"
                        if cpu[name]
                        else ""
                    )
                )
    finally:
        processes.stop()


if __name__ == "__main__":
    main()
