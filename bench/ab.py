"""Rows of the benchmark on two trees, interleaved: did a change make the gateway faster?

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/ab.py /tmp/before [--rows 5,5a] [--seconds 5] [--rounds 8]

Starts one nginx upstream and, for each tree (the one given, imported from it, and this one), the
processes the rows need, as `make bench` does (`bench/gateway_server.py`, one worker, the same
routes), on a store of the tree's own made by its own code: a gateway; a second one writing its
access log to a file for row 5a; the bare engine (`bench/bare_engine.py`) for row 3e. Then each
row runs with wrk -t1 -c32 against each tree in turn, the order swapped each round. Rows: 3e, 4
(auth "none"), 5 (one key), 5a (access log on), 5l (a local rate limit that never bites), 5r (the
same in Redis, `$GATEWAY_TEST_REDIS_URL`), 7 (unknown tokens, all different). Prints, per row and
tree, the median requests per second and CPU per request (user and system, read from /proc), the
median of the per-round ratios this tree / before, and each row's ratio to row 5 of its own tree
(what the paired targets of `make bench` hold). Measured apart, minutes away from each other, the
same code moved by half on this VM; side by side, round by round, it does not.
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
ROWS = ("3e", "4", "5", "5a", "5l", "5r", "7")
PATHS = {"4": "/open/small.json", "5": "/api/small.json", "5a": "/api/small.json"}
PATHS |= {"5l": "/limited/small.json", "7": "/api/small.json", "3e": "/small.json"}
PATHS |= {"5r": "/limited/small.json"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(processes: bench.Processes, tree: Path, *args: str) -> tuple[str, int]:
    """One of the bench's Python servers, importing from ``tree``: its address and pid."""
    process = subprocess.Popen(
        [bench.PYTHON, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree)),
    )
    processes.started.append(process)
    assert process.stdout is not None
    address = process.stdout.readline().strip()
    if "gateway_server.py" in args[0]:
        process.stdout.readline()  # the stats port
    return address, process.pid


def fill(tree: Path, store: Path) -> str:
    """A store of one key made by ``tree``'s own bench code: the key's secret."""
    script = (
        "import random, sys; from pathlib import Path; sys.path.insert(0, 'bench'); import run; "
        "print(run.fill_store(Path(sys.argv[1]), 1, random.Random(4))[0][0])"
    )
    done = subprocess.run(
        [bench.PYTHON, "-c", script, str(store)],
        capture_output=True,
        text=True,
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree)),
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def configs(home: Path, upstream: str) -> tuple[Path, Path, Path]:
    """The gateway's config on ``home``'s store, the same with an access log (row 5a), and the
    same with Redis rate limits (row 5r)."""
    text = (
        f'[server]\nlisten = "127.0.0.1:0"\nworkers = 1\n[admin]\nlisten = ""\n'
        f'[store]\npath = "{home / "store.db"}"\n[log]\naccess = "off"\n'
        f"[cache]\nttl_seconds = 3600\n"
        f'[[routes]]\nprefix = "/api"\nupstream = "{upstream}"\n'
        f'[[routes]]\nprefix = "/open"\nupstream = "{upstream}"\nauth = "none"\n'
        f'[[routes]]\nprefix = "/limited"\nupstream = "{upstream}"\n{bench.LIMITED_ROUTE}\n'
    )
    config, logged, redis = home / "gateway.toml", home / "logged.toml", home / "redis.toml"
    config.write_text(text)
    logged.write_text(text.replace('access = "off"', f'access = "{home / "access.log"}"'))
    redis.write_text(text + f'[ratelimit]\nbackend = "redis"\nurl = "{bench.REDIS_URL}"\n')
    return config, logged, redis


def main(before: Path, rows: list[str], seconds: int, rounds: int) -> None:
    bench.check_tools(quick=False)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    processes = bench.Processes()
    trees = {"before": before.resolve(), "this tree": HERE}
    rps: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-ab-") as tmp:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        (www / "small.json").write_text('{"ok": true, "service": "bench-upstream"}\n')
        rng = random.Random(7)
        unknown = bench.write_lines(
            work / "unknown.txt", [bench.fast_secret(rng) for _ in range(80_000)]
        )
        try:
            port = bench.free_port()
            server = f"server {{ listen 127.0.0.1:{port}; root {www}; }}"
            conf = bench.nginx_conf(work, "up", server)
            processes.start(nginx, "-e", str(work / "up.err"), "-c", str(conf))
            upstream = f"http://127.0.0.1:{port}"
            targets: dict[tuple[str, str], tuple[str, int]] = {}
            secret_of: dict[str, str] = {}
            tokens_of: dict[tuple[str, str], Path] = {}
            for name, tree in trees.items():
                # Each tree's store is made by that tree's own code: an older tree refuses a
                # store that carries a newer tree's migrations.
                home = work / name.replace(" ", "-")
                home.mkdir()
                secret_of[name] = fill(tree, home / "store.db")
                tokens = bench.write_lines(home / "tokens.txt", [secret_of[name]])
                for row in ROWS:
                    tokens_of[(row, name)] = unknown if row == "7" else tokens
                config, logged, redis = configs(home, upstream)
                gateway = start(processes, tree, str(tree / "bench/gateway_server.py"), str(config))
                for row in rows:
                    if row == "3e":
                        engine = tree / "bench/bare_engine.py"
                        server_of = start(processes, tree, str(engine), upstream, "127.0.0.1:0")
                    elif row in ("5a", "5r"):
                        row_config = logged if row == "5a" else redis
                        server_of = start(
                            processes, tree, str(tree / "bench/gateway_server.py"), str(row_config)
                        )
                    else:
                        server_of = gateway
                    targets[(row, name)] = (server_of[0] + PATHS[row], server_of[1])
            for (row, name), (url, _) in targets.items():
                bench.wait_http(url, {"X-Auth-Token": secret_of[name]})
                bench.wrk(url, 32, 1, tokens_of[(row, name)], False)  # keys cached, code warm
            for n in range(rounds):
                for row in rows:
                    for name in list(trees)[:: 1 if n % 2 == 0 else -1]:
                        url, pid = targets[(row, name)]
                        started = cpu_seconds(pid)
                        result = bench.wrk(url, 32, seconds, tokens_of[(row, name)], False)
                        rps.setdefault((row, name), []).append(result["rps"])
                        used = (cpu_seconds(pid) - started) / result["requests"] * 1e6
                        cpu.setdefault((row, name), []).append(used)
        finally:
            processes.stop()
    report(rows, list(trees), rps, cpu, rounds)


def report(
    rows: list[str],
    names: list[str],
    rps: dict[tuple[str, str], list[float]],
    cpu: dict[tuple[str, str], list[float]],
    rounds: int,
) -> None:
    for row in rows:
        for name in names:
            line = (
                f"row {row}, {name}: {statistics.median(rps[(row, name)]):,.0f} req/s, "
                f"{statistics.median(cpu[(row, name)]):.1f} us of CPU a request"
            )
            if row != "5" and ("5", name) in rps:
                paired = [a / b for a, b in zip(rps[(row, name)], rps[("5", name)], strict=True)]
                line += f", {statistics.median(paired):.3f} of its row 5"
            print(line)
        ratios = [
            new / old
            for new, old in zip(rps[(row, "this tree")], rps[(row, "before")], strict=True)
        ]
        print(
            f"row {row}, this tree / before, each round: {', '.join(f'{r:.3f}' for r in ratios)}; "
            f"median {statistics.median(ratios):.3f} ({rounds} rounds)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="a checkout of the tree to compare against")
    parser.add_argument("--rows", default="5", help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=8)
    arguments = parser.parse_args()
    chosen = arguments.rows.split(",")
    if unknown_rows := [row for row in chosen if row not in ROWS]:
        parser.error(f"unknown rows {unknown_rows}: choose from {', '.join(ROWS)}")
    main(arguments.before, chosen, arguments.seconds, arguments.rounds)
