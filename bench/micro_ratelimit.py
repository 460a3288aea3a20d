"""Micro-benchmark of a local rate-limit check, without HTTP (the target: a check counted per
node costs at most 1.2 x a check counted per process).

    .venv/bin/python bench/micro_ratelimit.py [--limits 1] [--baseline OLD_RATELIMIT_PY]

Prints microseconds per check, the best of several rounds, for: the per-process limiter alone;
the per-node limiter in one process (nothing to replay); and two per-node limiters on one
journal taking turns, as two workers sharing a client's requests (each check replays the
other's record); with ``--baseline``, the per-process check of another tree's
``gateway/ratelimit.py`` too (``git show main:gateway/ratelimit.py > /tmp/old.py``), measured
in the same rounds. Numbers vary on a noisy 2-core machine: compare runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import multiprocessing
import sys
import time
import timeit
from collections.abc import Callable

from core.policies import RateLimit
from gateway.ratelimit import Limits, LocalLimiter

N = 200_000


def best_us(checks: dict[str, Callable[[], object]], rounds: int = 9) -> dict[str, float]:
    """Microseconds per call of each, the best of ``rounds``: the rounds interleave, so a
    neighbour's burst of CPU weighs on every one alike."""
    best = dict.fromkeys(checks, float("inf"))
    for _ in range(rounds):
        for name, check in checks.items():
            # CPU time, not wall time: on a shared machine a wait for the CPU is not the check's.
            took = timeit.Timer(check, timer=time.process_time).timeit(number=N)
            best[name] = min(best[name], took / N * 1e6)
    return best


def limits_args(count: int) -> tuple[str, str, tuple[RateLimit, ...], tuple[RateLimit, ...]]:
    # Limits that never bite (as bench row 5l): every check records the request.
    own = tuple(RateLimit(100_000, 60 + n) for n in range(count))
    return "AK0123456789", "/api", own, ()


def limits(count: int) -> Limits:
    return Limits(*limits_args(count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limits", type=int, default=1, help="limits per check (default 1)")
    parser.add_argument("--baseline", help="another tree's gateway/ratelimit.py, to compare")
    args = parser.parse_args()
    held = limits(args.limits)
    clock = iter(range(1, 10**9))  # a new time per check, as in service
    checks: dict[str, Callable[[], object]] = {}
    if args.baseline:
        spec = importlib.util.spec_from_file_location("baseline_ratelimit", args.baseline)
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = old  # its dataclasses look themselves up there
        spec.loader.exec_module(old)
        old_limits = old.Limits(*limits_args(args.limits))
        old_local = old.LocalLimiter()
        checks["baseline, per process"] = lambda: old_local.check(old_limits, next(clock))

    local = LocalLimiter()
    checks["per process"] = lambda: local.check(held, next(clock))
    try:
        from gateway.node_limits import NodeJournal, NodeLimiter
    except ImportError:  # a tree from before per-node limits
        NodeJournal = None  # type: ignore[assignment,misc]
    if NodeJournal is not None:
        context = multiprocessing.get_context("spawn")
        alone = NodeLimiter(NodeJournal(context))
        journal = NodeJournal(context)
        first, second = NodeLimiter(journal), NodeLimiter(journal)
        turn = itertools.cycle((first, second))
        checks["per node, one worker"] = lambda: alone.check(held, next(clock))
        # Two workers taking turns: each check replays the other's record first.
        checks["per node, two workers taking turns"] = lambda: next(turn).check(held, next(clock))
    for name, us in best_us(checks).items():
        print(f"{name}: {us:.2f} us/check")


if __name__ == "__main__":
    main()
