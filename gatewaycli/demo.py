"""`gateway demo`: an echo upstream, the gateway on the given config, and a fresh key to try;
the admin API and console too when the config has an ``[admin] listen`` address.

Everything runs in one process and one event loop. The echo upstream listens where the config's
first route points (the example config: http://127.0.0.1:9000). The demo has a store of its own,
in a new temporary directory removed when it stops, so it never touches the config's
``[store] path``: `gateway init` on the real store afterwards still creates the owner key.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from admin import access, service
from core.config import Config
from gateway.app import GatewayApp
from gateway.resources import Resources
from gatewaycli import echo, server


def run_demo(config: Config) -> None:
    if not config.routes:
        raise SystemExit(f"gateway demo: {config.source} has no [[routes]] to demonstrate")
    folder = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    try:
        # The demo's own store and credits journal, removed when it stops.
        store = config.store.pointing_at(str(folder / "demo.db"))
        journal = replace(config.credits, journal_dir=folder / "credits-journal")
        server.run(_demo(replace(config, store=store, credits=journal)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _command() -> str:
    """How this demo was started, for the line that revokes its key: `.venv/bin/gateway` from
    `make demo`, the installed command's path elsewhere; `gateway` under `python -m gatewaycli`."""
    invoked = sys.argv[0]
    return invoked if Path(invoked).name == "gateway" else "gateway"


async def _demo(config: Config) -> None:
    route = next((r for r in config.routes if r.auth == "required"), config.routes[0])
    upstream = urlsplit(route.upstream)
    try:
        runner = await echo.start(upstream.hostname or "127.0.0.1", upstream.port or 80)
    except OSError as exc:
        raise SystemExit(
            f"gateway demo: cannot start the echo upstream on {route.upstream}: "
            f"{exc.strerror}; is another demo running?"
        ) from None
    try:
        proxy_sock = server.bind(config.listen)
        admin_sock = server.bind(config.admin_listen) if config.admin_listen else None
        resources = Resources(config)
        await resources.db.open(create=True)
        init = await service.init(resources.db, resources.secret_format)
        new = await service.create_key(
            resources.db,
            access.LOCAL_OPERATOR,
            resources.secret_format,
            user_id=init.user.id,
            description="demo key (gateway demo)",
        )
        await resources.db.close()
        base = server.address(proxy_sock, config.tls)
        revoke = (
            f"{_command()} --config {config.source} --store {config.store.description} "
            f"keys revoke {new.key.access_key}"
        )
        console = (
            f"The admin console: {server.address(admin_sock, config.admin_tls)}/ "
            "(sign in with the secret key)\n"
            if admin_sock is not None
            else ""
        )
        print(
            f"""
Demo gateway on {base}
  store          {config.store.description}
                 (the demo's own, removed when it stops; [store] path is not touched)
  echo upstream  {route.upstream}  (answers with what it received)
  route          {route.prefix} -> {route.upstream} (auth = "{route.auth}")
  access key     {new.key.access_key}
  secret key     {new.secret_key}

Try it (the upstream sees X-Auth-Access-Key, X-Project-ID, ... but never the secret):
  curl -s {base}{route.prefix}/hello -H 'X-Auth-Token: {new.secret_key}'
  curl -s {base}{route.prefix}/hello -H 'Authorization: Bearer {new.secret_key}'
  curl -s {base}{route.prefix}/hello                      # 401 missing_token
  curl -s {base}{route.prefix}/hello -H 'X-Auth-Token: gws_live_typo'   # 401 malformed_token
Revoke it from another terminal, and the first curl answers 401 within a second or so:
  {revoke}

{console}
Ctrl-C stops the demo.""",
            flush=True,
        )
        listeners = [server.Listener(GatewayApp(resources), proxy_sock, config.tls, True)]
        if admin_sock is not None:
            listeners.append(
                server.Listener(server.admin_app(resources), admin_sock, config.admin_tls)
            )
        await server.run_listeners(resources, listeners)
    finally:
        await runner.cleanup()
