"""Credits across a fleet under load: two `gateway serve --workers 2` nodes on one PostgreSQL
database spend one key's credits (no refill) under wrk, and exactly that many are admitted; with
``--kill``, one node is killed with SIGKILL mid-run, and what its reservation held comes back,
or is lost, as docs/plans-and-credits.md says.

    .venv/bin/python bench/credits_fleet.py [--credits 10000] [--seconds 8] [--json PATH]
    .venv/bin/python bench/credits_fleet.py --kill [--kill-at 0.3] [--restart] [--json PATH]

The parts (``bench/node_load.py``): a database of its own on the shared server
(``$GATEWAY_TEST_POSTGRES_URL``, default the local one; dropped at the end), an nginx upstream
that logs when each request reached it, and the nodes, each from a config in a directory of its
own; the configs differ only in the upstream path (``/a/...``, ``/b/...``), so the upstream's log
says which node forwarded what, and when. ``[credits] lease_seconds`` is 2 s (the default is
10 s) so a dead node's reservation comes back within the run; ``sync_interval_seconds`` is the
default, 0.2 s.

Load: one wrk per node at once (-c16 each, the key's secret, statuses counted), once both nodes
are warmed on a free route (``cost = 0``) with the same key. Reported: the statuses, the
admitted requests per node (answered 200 by wrk's count, and sent to the upstream by its log),
and how fast the credits went (first to last request the upstream was sent).

``--kill``: once the upstream has been sent ``--kill-at`` of the credits, node a's process group
(the parent and its workers) is killed with SIGKILL and its wrk stopped 0.2 s later; node b is
loaded on past the bound by which a dead node's reservation comes back (``lease_seconds`` after
its last report, at the next reclaim, every ``lease_seconds / 2``, taken at the survivor's next
report: ``1.5 x lease_seconds + 2 x sync_interval_seconds``) by ``--margin`` seconds. ``lost``
is what no request reached the upstream for. The dead node's leases are read from the store
before they expire: their ``ceiling - spent`` (the headroom of each one's last report) is the
docs' bound, to which the requests in flight when it died (at most one per wrk connection) add.
``--restart`` then starts node a again (same config, same directory) and loads both nodes as
long again: what the restart gives back is admitted then.

The quick form `make test` runs (``tests/test_bench_credits.py``), so the script does not rot,
spends 500 credits without a kill. Exit status 1 when more requests were admitted than credits
held, or, without a kill, when anything but exactly the credits was admitted; 2 when nginx, wrk
or PostgreSQL is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pgbench
from node_load import CONNECTIONS, LONG, Node, Upstream, cli, start_wrk, stop_wrk, warm, wrk_done


def config_text(store_url: str, upstream: str, node: str, args: argparse.Namespace) -> str:
    return f"""
[server]
listen = "127.0.0.1:0"
[admin]
listen = ""
[store]
url = "{store_url}"
pool_min_size = 1
pool_max_size = 3
[log]
access = "off"
[cache]
ttl_seconds = 3600
[webhooks]
deliver = false
[credits]
sync_interval_seconds = {args.sync_interval}
lease_seconds = {args.lease_seconds}

[[routes]]
prefix = "/echo"
upstream = "{upstream}/{node}/warm"
cost = 0

[[routes]]
prefix = "/api"
upstream = "{upstream}/{node}/spend"
"""


async def leases(url: str) -> list[dict[str, float]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT granted, ceiling, spent, expires_at FROM credit_leases")
    finally:
        await conn.close()
    return [dict(row) for row in rows]


async def balance(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT coalesce(sum(remaining), 0) FROM credit_balances"))
    finally:
        await conn.close()


def count(times: dict[str, list[float]]) -> dict[str, int]:
    return {node: len(times.get(node, [])) for node in ("a", "b")}


def statuses_of(*runs: dict[str, Any]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for run in runs:
        total.update(run["statuses"])
        errors.update({k: v for k, v in run["errors"].items() if k != "status" and v})
    other = {status: n for status, n in total.items() if status not in ("200", "429")}
    return {"200": total["200"], "429": total["429"], "other": other, "errors": dict(errors)}


def run_plain(
    args: argparse.Namespace, nodes: dict[str, Node], tokens: Path, upstream: Upstream
) -> dict[str, Any]:
    began = time.time()
    runs = {
        name: start_wrk(node.url + "/api/x", args.seconds, tokens) for name, node in nodes.items()
    }
    done = {name: wrk_done(run) for name, run in runs.items()}
    sent = upstream.forwarded("spend", began)
    every = sorted(t for times in sent.values() for t in times)
    spread = every[-1] - every[0] if len(every) > 1 else 0.0
    return {
        "statuses": statuses_of(*done.values()),
        "admitted_per_node": {name: d["statuses"].get("200", 0) for name, d in done.items()},
        "upstream_saw": count(sent),
        "load_seconds": args.seconds,
        "exhausted_after_seconds": round(spread, 2),
        "admitted_per_second": round(len(every) / spread) if spread else 0,
        "refusing_at_the_end_seconds": round(began + done["a"]["seconds"] - every[-1], 2)
        if every
        else None,
    }


def run_kill(
    args: argparse.Namespace, nodes: dict[str, Node], tokens: Path, upstream: Upstream
) -> dict[str, Any]:
    bound = 1.5 * args.lease_seconds + 2 * args.sync_interval
    began = time.time()
    # Ended by SIGINT, not by a duration: when the kill comes depends on how fast this machine
    # spends.
    survivor = start_wrk(nodes["b"].url + "/api/x", LONG, tokens)
    doomed = start_wrk(nodes["a"].url + "/api/x", LONG, tokens)
    upstream.wait_for("spend", round(args.kill_at * args.credits))
    nodes["a"].kill()
    killed_at = time.time()
    time.sleep(0.2)  # its wrk sees its connections go
    (doomed_run,) = stop_wrk([doomed])
    # The dead node's leases: last reported before the kill (the survivor's, spending, report
    # every interval), read before they expire and are reclaimed.
    time.sleep(max(0.0, 3 * args.sync_interval - 0.2))
    dead = [
        lease
        for lease in asyncio.run(leases(args.store_url))
        if lease["expires_at"] - args.lease_seconds <= killed_at
    ]
    time.sleep(max(0.0, killed_at + bound + args.margin - time.time()))
    (survivor_run,) = stop_wrk([survivor])
    ended = time.time()
    before_kill = count(upstream.forwarded("spend", began, killed_at))
    after_kill = upstream.forwarded("spend", killed_at)
    figures: dict[str, Any] = {
        "killed_after_seconds": round(killed_at - began, 2),
        "bound_seconds": bound,
        "statuses": statuses_of(doomed_run, survivor_run),
        "killed_node_wrk": {"200": doomed_run["statuses"].get("200", 0), **doomed_run["errors"]},
        "upstream_saw_before_kill": before_kill,
        "upstream_saw_after_kill": count(after_kill),
        "total": sum(before_kill.values()) + sum(count(after_kill).values()),
        "dead_leases": [
            {k: int(v) for k, v in lease.items() if k != "expires_at"} for lease in dead
        ],
        "survivor_after_kill": survivor_timeline(after_kill.get("b", []), killed_at, ended),
    }
    figures["lost"] = args.credits - figures["total"]
    # The store counts a dead lease's ceiling as spent: what the node did not forward of it is
    # lost. At most the headroom of its last report (ceiling - spent), plus what was admitted
    # but not yet forwarded at the kill.
    figures["lost_by_the_store"] = sum(int(lease["ceiling"]) for lease in dead) - before_kill["a"]
    figures["lost_at_most"] = sum(int(lease["ceiling"] - lease["spent"]) for lease in dead)
    figures["lost_at_most_with_in_flight"] = figures["lost_at_most"] + CONNECTIONS
    figures["forwarded_unanswered_at_kill"] = before_kill["a"] - figures["killed_node_wrk"]["200"]
    if args.restart:
        nodes["a"].start(tokens.read_text().strip())
        restarted_at = time.time()
        warm([nodes["a"]], tokens)
        runs = [start_wrk(node.url + "/api/x", LONG, tokens) for node in nodes.values()]
        time.sleep(bound + args.margin)
        again = count(upstream.forwarded("spend", restarted_at))
        figures["after_restart"] = {
            "statuses": statuses_of(*stop_wrk(runs)),
            "upstream_saw": again,
            "total": figures["total"] + sum(again.values()),
            "lost": figures["lost"] - sum(again.values()),
        }
    return figures


def survivor_timeline(times: list[float], killed_at: float, ended: float) -> dict[str, Any]:
    """Node b after the kill, in seconds from it: its longest pause (the credits it knew of
    spent) before it admitted again (the dead node's reservation back), and how long it
    refused at the end."""
    if not times:
        return {"admitted": 0, "refusing_at_the_end": round(ended - killed_at, 2)}
    pause = max(itertools.pairwise(times), key=lambda pair: pair[1] - pair[0], default=(0, 0))
    return {
        "admitted": len(times),
        "longest_pause": [round(pause[0] - killed_at, 2), round(pause[1] - killed_at, 2)],
        "admitted_after_it": sum(1 for t in times if t >= pause[1]) if pause[1] else 0,
        "last_admitted": round(times[-1] - killed_at, 2),
        "refusing_at_the_end": round(ended - times[-1], 2),
    }


def failures(args: argparse.Namespace, figures: dict[str, Any]) -> list[str]:
    """What fails the run: more admitted than held, ever; without a kill, anything but exactly
    the credits admitted (by wrk's count and the upstream's), or a socket error."""
    found = []
    statuses = figures["statuses"]
    if statuses["other"]:
        found.append(f"answers other than 200 and 429: {statuses['other']}")
    if args.kill:
        most = max(figures["total"], figures.get("after_restart", {}).get("total", 0))
        if most > args.credits:
            found.append(f"{most} admitted of {args.credits} credits")
        return found
    if statuses["errors"]:
        found.append(f"socket errors: {statuses['errors']}")
    upstream = sum(figures["upstream_saw"].values())
    if statuses["200"] != args.credits or upstream != args.credits:
        found.append(f"{statuses['200']} answered and {upstream} forwarded of {args.credits}")
    return found


def measure(args: argparse.Namespace, nginx_bin: str) -> dict[str, Any]:
    database, args.store_url = pgbench.create_database()
    work = Path(tempfile.mkdtemp(prefix="gw-credits-"))
    nodes: dict[str, Node] = {}
    upstream: Upstream | None = None
    try:
        upstream = Upstream(work, nginx_bin)
        for name in ("a", "b"):
            (work / name).mkdir()
            config = work / name / "gateway.toml"
            config.write_text(config_text(args.store_url, upstream.url, name, args))
            nodes[name] = Node(config)
        made = cli(nodes["a"].config, "init")
        key = cli(
            nodes["a"].config,
            *("keys", "create", "--user", made["user_id"], "--credits", str(args.credits)),
        )
        tokens = work / "key.txt"
        tokens.write_text(key["secret_key"] + "\n")
        for node in nodes.values():
            node.start(key["secret_key"])
        warm(list(nodes.values()), tokens)
        if args.kill:
            figures = run_kill(args, nodes, tokens, upstream)
        else:
            figures = run_plain(args, nodes, tokens, upstream)
        for node in nodes.values():
            node.stop()
        figures["balance_at_end"] = asyncio.run(balance(args.store_url))
    finally:
        for node in nodes.values():
            node.stop()
        if upstream is not None:
            upstream.stop()
        pgbench.drop_database(database)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/credits_fleet.py", *sys.argv[1:]]),
        "credits": args.credits,
        "nodes": 2,
        "workers_per_node": 2,
        "connections_per_node": CONNECTIONS,
        "lease_seconds": args.lease_seconds,
        "sync_interval_seconds": args.sync_interval,
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--credits", type=int, default=10_000, help="the key's, no refill")
    parser.add_argument("--seconds", type=int, default=8, help="the load, without --kill")
    parser.add_argument("--kill", action="store_true", help="SIGKILL node a mid-run")
    parser.add_argument(
        "--kill-at", type=float, default=0.3, help="once this share of the credits was forwarded"
    )
    parser.add_argument("--restart", action="store_true", help="with --kill: start it again")
    parser.add_argument("--margin", type=float, default=3.0, help="seconds of load past the bound")
    parser.add_argument("--lease-seconds", type=float, default=2.0)
    parser.add_argument("--sync-interval", type=float, default=0.2)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if args.restart and not args.kill:
        parser.error("--restart goes with --kill")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    missing = [
        f"no {tool}: install it (Debian/Ubuntu: apt-get install {package})"
        for tool, package, found in (
            ("nginx", "nginx-light", Path(nginx_bin).exists()),
            ("wrk", "wrk", shutil.which("wrk") is not None),
        )
        if not found
    ]
    problem = pgbench.available()
    if problem is not None:
        missing.append(problem + "; set GATEWAY_TEST_POSTGRES_URL")
    if missing:
        print("credits_fleet: " + "; ".join(missing), file=sys.stderr)
        raise SystemExit(2)
    figures = measure(args, nginx_bin)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    failed = failures(args, figures)
    if failed:
        print("credits_fleet: " + "; ".join(failed), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
