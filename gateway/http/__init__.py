"""The HTTP engine: HTTP/1.1 on both sides of the gateway, knowing nothing of keys or routes.

- ``server``: the protocol of every listener (httptools), one ``cycle.Cycle`` per request.
- ``upstream``: the connections to the upstreams and their pools, each exchange on them one
  state machine with a state per direction (``exchange``).
- ``watchdog``: the timeouts of every exchange in flight, one timer for all.
- ``batch``: writes held to the end of the loop iteration; ``loop``: the running loop, held.

It imports nothing of the gateway outside this package (tests/test_layers.py holds that).
"""
