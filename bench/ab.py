"""Row 5 on two trees, interleaved: did a change make the gateway faster?

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/ab.py /tmp/before [--seconds 5] [--rounds 8]

Starts one nginx upstream and two gateways as `make bench` does (`bench/gateway_server.py`, one
worker, the same config), one from the tree given (imports from it) and one from this one, and
runs row 5 (one key, cache hits, wrk -t1 -c32) against each in turn, the order swapped each
round. Prints each one's median requests per second and CPU per request (user and system, read
from /proc), and the ratio of the two in each round. Measured apart, minutes away from each
other, the same code moved by half on this VM; side by side, round by round, it does not.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import run as bench

HERE = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(before: Path, seconds: int, rounds: int) -> None:
    bench.check_tools(quick=False)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    processes = bench.Processes()
    with tempfile.TemporaryDirectory(prefix="gateway-ab-") as tmp:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        (www / "small.json").write_text('{"ok": true, "service": "bench-upstream"}\n')
        secrets, _ = bench.fill_store(work / "store.db", 1, random.Random(4))
        try:
            port = bench.free_port()
            server = f"server {{ listen 127.0.0.1:{port}; root {www}; }}"
            conf = bench.nginx_conf(work, "up", server)
            processes.start(nginx, "-e", str(work / "up.err"), "-c", str(conf))
            config = work / "gateway.toml"
            config.write_text(
                f'[server]\nlisten = "127.0.0.1:0"\nworkers = 1\n[admin]\nlisten = ""\n'
                f'[store]\npath = "{work / "store.db"}"\n[log]\naccess = "off"\n'
                f'[cache]\nttl_seconds = 3600\n[[routes]]\nprefix = "/api"\n'
                f'upstream = "http://127.0.0.1:{port}"\n'
            )
            gateways: dict[str, tuple[str, int]] = {}
            for name, tree in (("before", before.resolve()), ("this tree", HERE)):
                process = subprocess.Popen(
                    [bench.PYTHON, str(tree / "bench" / "gateway_server.py"), str(config)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=tree,
                    env=dict(os.environ, PYTHONPATH=str(tree)),
                )
                processes.started.append(process)
                assert process.stdout is not None
                url = process.stdout.readline().strip() + "/api/small.json"
                process.stdout.readline()  # the stats port
                gateways[name] = (url, process.pid)
            tokens = bench.write_lines(work / "tokens.txt", secrets)
            for url, _ in gateways.values():
                bench.wait_http(url, {"X-Auth-Token": secrets[0]})
                bench.wrk(url, 32, 1, tokens, False)  # the key cached, the code warm
            rps: dict[str, list[float]] = {name: [] for name in gateways}
            cpu: dict[str, list[float]] = {name: [] for name in gateways}
            for n in range(rounds):
                for name in list(gateways)[:: 1 if n % 2 == 0 else -1]:
                    url, pid = gateways[name]
                    started = cpu_seconds(pid)
                    result = bench.wrk(url, 32, seconds, tokens, False)
                    rps[name].append(result["rps"])
                    cpu[name].append((cpu_seconds(pid) - started) / result["requests"] * 1e6)
        finally:
            processes.stop()
    for name in gateways:
        print(
            f"{name}: {statistics.median(rps[name]):,.0f} req/s, "
            f"{statistics.median(cpu[name]):.1f} us of CPU a request (medians of {rounds} rounds)"
        )
    ratios = [new / old for new, old in zip(rps["this tree"], rps["before"], strict=True)]
    print(
        f"this tree / before, each round: {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="a checkout of the tree to compare against")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=8)
    arguments = parser.parse_args()
    main(arguments.before, arguments.seconds, arguments.rounds)
