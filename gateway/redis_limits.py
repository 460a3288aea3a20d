"""Rate limits in Redis (``[ratelimit] backend = "redis"``): one sorted set per key and limit,
shared by every worker and node; one Lua script checks every limit of a request and records it
atomically. The checks of one loop iteration share one round trip (``gateway.redis_pipe``), and
the checks of one key among them share one script call.

When Redis does not answer within ``timeout_ms``, the caller (``gateway.gate``) applies ``fail``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
from collections.abc import Callable
from typing import Any

from core.config import RateLimitConfig
from gateway.ratelimit import Decision, Limits, decision, field
from gateway.redis_pipe import RedisPipe, RedisReplyError, pack

log = logging.getLogger("gateway.ratelimit")  # one logger for both backends


# KEYS: one sorted set per limit. ARGV: now (ms), a member prefix unique to this call, how many
# requests of the same key this call checks (n), then limit and window (ms) per key. Admits the
# first k = min(n, room left in every log) of them, as n calls one after the other would: each
# admitted one is recorded in every log (members prefix:1..prefix:k), a refused one in none.
# Returns {retry_ms for the refused, k, count, reset_ms, count, reset_ms, ...}, counts as they
# were before this call's additions.
SCRIPT = """
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local k = n
local counts = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  counts[i] = count
  if limit - count < k then k = limit - count end
end
if k < 0 then k = 0 end
local retry = 0
local out = {0, k}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  if k > 0 then
    local members = {}
    for j = 1, k do
      members[#members + 1] = now
      members[#members + 1] = ARGV[2] .. ':' .. j
    end
    redis.call('ZADD', key, unpack(members))
    redis.call('PEXPIRE', key, window)
  end
  local total = counts[i] + k
  if k < n and total >= limit then
    local oldest = redis.call('ZRANGE', key, total - limit, total - limit, 'WITHSCORES')
    local wait = tonumber(oldest[2]) + window - now
    if wait > retry then retry = wait end
  end
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local reset = 0
  if first[2] then reset = tonumber(first[2]) + window - now end
  out[#out + 1] = counts[i]
  out[#out + 1] = reset
end
out[1] = retry
return out
"""
# The most requests one script call checks (its ZADD's arguments stay well under Lua's stack).
MOST_IN_ONE_CALL = 1000


class _Batch:
    """The checks of one key's limits asked for in one loop iteration: one script call."""

    __slots__ = ("answers", "limits", "now")

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits, self.now = limits, now
        self.answers: list[asyncio.Future[Any]] = []


class RedisLimiter:
    """Sliding logs in Redis, shared by every worker and node. The checks of one loop
    iteration travel together, one round trip on one connection (``gateway.redis_pipe``), and
    the checks of one key among them are one script call: n requests of a key that arrive
    together cost Redis one call, not n, and are decided as n calls in a row would be (the
    first ones admitted while the logs have room; all of them timed at the first one's now)."""

    local = False

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float]) -> None:
        self.pipe = RedisPipe(config.url, config.timeout_ms / 1000)
        # Redis names a script by its SHA-1 (EVALSHA): a name, not a secret.
        self.sha = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self.fail_open = config.fail == "open"
        self.clock = clock
        self.unavailable = 0  # checks Redis did not answer (for the metrics)
        self.failing = False
        # Members must be unique across every worker and node (an equal one would replace an
        # entry, not add one): host, process, this limiter, counter (then the request's rank).
        self._prefix = f"{os.uname().nodename}:{os.getpid()}:{os.urandom(4).hex()}:"
        self._serial = itertools.count()
        self._open: dict[int, _Batch] = {}  # by id() of the Limits, which the batch holds
        self._full: list[_Batch] = []

    async def check(self, limits: Limits, now: float) -> Decision | None:
        """The decision, or None when Redis did not answer (the caller applies the fail rule)."""
        try:
            if self.pipe.transport is None:
                await self.pipe.connect()
            out = await self.enqueue(limits, now)
        except (RedisReplyError, OSError, TimeoutError) as exc:
            self.failed(exc)
            return None
        return self.decided(limits, out)

    def send(self, limits: Limits, now: float) -> asyncio.Future[Any] | None:
        """The check sent now, for a caller told by a callback (``read`` makes the answer a
        decision); None when there is no connection yet (then ``check`` makes one)."""
        if self.pipe.transport is None:
            return None
        return self.enqueue(limits, now)

    def enqueue(self, limits: Limits, now: float) -> asyncio.Future[Any]:
        """One request's check, joined to its key's batch of this loop iteration: a future
        of the script's answer as a call for this request alone would give it."""
        loop = self.pipe.loop
        assert loop is not None
        answer = loop.create_future()
        if not self._open and not self._full:
            loop.call_soon(self.flush)
        batch = self._open.get(id(limits))
        if batch is None:
            batch = self._open[id(limits)] = _Batch(limits, now)
        batch.answers.append(answer)
        if len(batch.answers) == MOST_IN_ONE_CALL:
            self._full.append(self._open.pop(id(limits)))
        return answer

    def flush(self) -> None:
        """The iteration's batches, one script call each, in one write."""
        batches = [*self._full, *self._open.values()]
        self._full, self._open = [], {}
        if self.pipe.transport is None:  # dropped since they were asked for
            for batch in batches:
                _settle(batch.answers, ConnectionError("Redis closed the connection"))
            return
        for batch in batches:
            self.call(batch, "EVALSHA", self.sha)
        self.pipe.flush()

    def call(self, batch: _Batch, *script: str) -> None:
        args = self.arguments(batch.limits, batch.now, len(batch.answers))
        sent = self.pipe.send(pack((script[0], *script[1:], *args)))
        sent.add_done_callback(lambda answer: self.answered(batch, script[0], answer))

    def answered(self, batch: _Batch, how: str, sent: asyncio.Future[Any]) -> None:
        """The script's answer, dealt out to the batch's requests in order."""
        error = sent.exception()
        flushed = isinstance(error, RedisReplyError) and str(error).startswith("NOSCRIPT")
        if flushed and how == "EVALSHA":  # the script is sent whole, and Redis keeps it
            self.call(batch, "EVAL", SCRIPT)
            self.pipe.flush()
            return
        if error is not None:
            _settle(batch.answers, error)
            return
        out = sent.result()
        retry, admitted, pairs = out[0], out[1], out[2:]
        counts, resets = pairs[0::2], pairs[1::2]
        for rank, answer in enumerate(batch.answers):
            if answer.done():  # its request was cancelled (client gone)
                continue
            if rank < admitted:
                mine = [0]
                for count, reset in zip(counts, resets, strict=True):
                    mine += (count + rank + 1, reset)
            else:
                mine = [retry]
                for count, reset in zip(counts, resets, strict=True):
                    mine += (count + admitted, reset)
            answer.set_result(mine)

    def read(self, limits: Limits, answer: asyncio.Future[Any]) -> Decision | None:
        """``send``'s answer, as ``check`` returns it (None: Redis did not answer)."""
        error = answer.exception()
        if isinstance(error, (RedisReplyError, OSError, TimeoutError)):
            self.failed(error)
            return None
        if error is not None:
            raise error
        return self.decided(limits, answer.result())

    def arguments(self, limits: Limits, now: float, count: int) -> list[str | int]:
        """EVALSHA's and EVAL's after the script: the keys, then ``SCRIPT``'s ARGV."""
        args: list[str | int] = [len(limits.items)]
        args += [f"gw:rl:{lim.key}" for lim in limits.items]
        args += [int(now * 1000), f"{self._prefix}{next(self._serial)}", count]
        for lim in limits.items:
            args += [lim.rule.limit, lim.rule.window_seconds * 1000]
        return args

    def failed(self, exc: BaseException) -> None:
        self.unavailable += 1
        if not self.failing:
            self.failing = True
            rule = "let through" if self.fail_open else "refused with 503"
            log.warning("rate limits: Redis does not answer (%s); requests are %s", exc, rule)

    def decided(self, limits: Limits, out: Any) -> Decision:
        if self.failing:
            self.failing = False
            log.warning("rate limits: Redis answers again")
        fields = [
            field(lim, int(count), int(reset) / 1000)
            for lim, count, reset in zip(limits.items, out[1::2], out[2::2], strict=True)
        ]
        return decision(limits, fields, int(out[0]) / 1000)

    async def close(self) -> None:
        await self.pipe.close()


def _settle(answers: list[asyncio.Future[Any]], error: BaseException) -> None:
    for answer in answers:
        if not answer.done():
            answer.set_exception(error)
