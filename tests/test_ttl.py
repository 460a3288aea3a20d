"""The verifier's caches: a bounded map in deadline order, on an injected clock."""

from __future__ import annotations

from gateway.ttl import TTLMap


def make(max_entries: int = 3, ttl: float = 10) -> tuple[TTLMap[str, int], list[float]]:
    now = [100.0]
    return TTLMap(max_entries=max_entries, ttl_seconds=ttl, clock=lambda: now[0]), now


def test_ttl_map_expires_bounds_and_purges() -> None:
    now = [100.0]
    cache: TTLMap[str, int] = TTLMap(max_entries=3, ttl_seconds=10, clock=lambda: now[0])
    for n, key in enumerate("abcd"):
        cache[key] = n
    assert len(cache) == 3 and cache.get("a") is None  # the oldest went first
    assert cache.get("d") == 3 and "b" in cache
    cache["b"] = 9  # re-set: now the newest
    cache["e"] = 4
    assert cache.get("b") == 9 and cache.get("c") is None
    now[0] += 10  # a deadline is exclusive
    assert cache.get("d") is None and "e" not in cache
    cache["f"] = 5
    assert cache.purge() == 1 and len(cache) == 1  # "b" was still stored, expired
    assert cache.pop("f") == 5 and cache.pop("f") is None


def test_an_entry_lives_exactly_its_ttl() -> None:
    cache, now = make(ttl=5)
    cache["k"] = 1
    now[0] += 4.999
    assert cache.get("k") == 1 and "k" in cache
    now[0] += 0.001
    assert cache.get("k") is None and len(cache) == 0  # dropped when met


def test_purge_costs_what_it_drops_and_stops_at_the_first_live_entry() -> None:
    cache, now = make(max_entries=100, ttl=10)
    for n in range(10):
        cache[f"k{n}"] = n
        now[0] += 1  # k0 expires at 110, k9 at 119
    now[0] = 114.5
    assert cache.purge() == 5
    assert [cache.get(f"k{n}") for n in range(4, 7)] == [None, 5, 6]
    assert cache.purge() == 0


def test_clear_and_pop() -> None:
    cache, _ = make()
    cache["a"], cache["b"] = 1, 2
    assert cache.pop("a") == 1 and cache.pop("missing") is None
    cache.clear()
    assert len(cache) == 0 and cache.get("b") is None


class Walks(dict[str, float]):
    """A dict that counts the passes made over it from the front."""

    walks = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.walks += 1
        return super().__iter__()

    def items(self):  # type: ignore[no-untyped-def]
        self.walks += 1
        return super().items()


def test_purge_and_eviction_make_one_pass_not_one_per_entry() -> None:
    """A dict keeps deleted slots until it is resized and each new pass from the front walks
    them again: dropping the front one ``next(iter())`` at a time was quadratic (80,000 expired
    entries held the event loop 1.6 s; an insert into a full map of 100,000 cost 25 us)."""
    cache, now = make(max_entries=6400, ttl=10)
    deadlines = cache._deadlines = Walks()
    for n in range(6400):
        cache[f"k{n}"] = n
    cache["one more"] = 0
    # The oldest 64th went in one pass: the map is not at its bound on every next insert.
    assert deadlines.walks == 1 and len(cache) == 6400 - 100 + 1
    assert cache.get("k99") is None and cache.get("k100") == 100
    now[0] += 10
    assert cache.purge() == 6301 and len(cache) == 0
    assert deadlines.walks == 2
