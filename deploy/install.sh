#!/bin/sh
# Installs the gateway under PREFIX: the image's install steps (deploy/Dockerfile runs this), and
# the same steps on a host that runs it under systemd (deploy/gateway.service).
#
#   deploy/install.sh SOURCE [PREFIX]
#
# SOURCE   what pip installs: a source tree (this checkout), an sdist or a wheel of authgateway
# PREFIX   default /opt/gateway. Made there:
#            venv/                       a virtual environment with the `gateway` command
#            etc/gateway.toml            the example config, its store, pid file and credits
#                                        journal under data/
#                                        (kept if it exists: a re-install upgrades the code only)
#            data/                       the SQLite store, the pid file, the credits journal
#                                        (the only place the service writes)
#            share/                      bash and zsh completion scripts
#
# Environment:
#   PYTHON        the Python 3.11+ to build the venv from, with pip 22.3+ (default: python3)
#   GATEWAY_USER  when set and run as root: a system user of that name is made (if missing) and
#                 owns etc/ and data/; the service runs as it
#   PIP_*         pip's own settings: PIP_INDEX_URL for a mirror, PIP_NO_INDEX=1 with
#                 PIP_FIND_LINKS=DIR for a host without network
#   GATEWAY_BORROW_SITE_PACKAGES  a site-packages directory the venv may import the dependencies
#                 from (a .pth line) instead of installing them: the tests use it, with
#                 PIP_NO_DEPS=1, to run this script offline
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 SOURCE [PREFIX]  (SOURCE: a source tree, sdist or wheel of authgateway)" >&2
    exit 2
fi
SOURCE=$1
PREFIX=${2:-/opt/gateway}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'

echo "== virtual environment: $PREFIX/venv"
# No pip inside the venv (ensurepip is the slowest step here): the installing Python's pip
# installs into it, now and at an upgrade (run this script again).
"$PYTHON" -m venv --without-pip "$PREFIX/venv"
if [ -n "${GATEWAY_BORROW_SITE_PACKAGES:-}" ]; then
    purelib=$("$PREFIX/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$GATEWAY_BORROW_SITE_PACKAGES" > "$purelib/borrowed-dependencies.pth"
fi
pip() { "$PYTHON" -m pip --python "$PREFIX/venv/bin/python" "$@"; }
pip install --quiet --no-cache-dir --upgrade "$SOURCE"
pip check

echo "== directories and config: $PREFIX/etc, $PREFIX/data"
install -d -m 0755 "$PREFIX/etc" "$PREFIX/share/bash-completion/completions" "$PREFIX/share/zsh/site-functions"
install -d -m 0700 "$PREFIX/data"
if [ ! -e "$PREFIX/etc/gateway.toml" ]; then
    sed -e "s|^path = \"gateway.db\" |path = \"$PREFIX/data/gateway.db\" |" \
        -e "s|^pid_file = \"\"  |pid_file = \"$PREFIX/data/gateway.pid\"|" \
        -e "s|^journal_dir = \"credits-journal\"|journal_dir = \"$PREFIX/data/credits-journal\"|" \
        "$HERE/../config.example.toml" > "$PREFIX/etc/gateway.toml"
    grep -q "^path = \"$PREFIX/data/gateway.db\"" "$PREFIX/etc/gateway.toml" \
        && grep -q "^pid_file = \"$PREFIX/data/gateway.pid\"" "$PREFIX/etc/gateway.toml" \
        && grep -q "^journal_dir = \"$PREFIX/data/credits-journal\"" "$PREFIX/etc/gateway.toml" \
        || { echo "$0: config.example.toml changed its [store] path, pid_file or journal_dir line" >&2; exit 1; }
fi
"$PREFIX/venv/bin/gateway" completion bash > "$PREFIX/share/bash-completion/completions/gateway"
"$PREFIX/venv/bin/gateway" completion zsh > "$PREFIX/share/zsh/site-functions/_gateway"

if [ -n "${GATEWAY_USER:-}" ] && [ "$(id -u)" -eq 0 ]; then
    echo "== system user: $GATEWAY_USER"
    id -u "$GATEWAY_USER" >/dev/null 2>&1 \
        || useradd --system --home-dir "$PREFIX" --shell /usr/sbin/nologin "$GATEWAY_USER"
    chown -R "$GATEWAY_USER:" "$PREFIX/etc" "$PREFIX/data"
fi

echo "== check"
"$PREFIX/venv/bin/python" -c "
import sys
from pathlib import Path
from core import config
cfg = config.load(Path(sys.argv[1]))
print(f'{cfg.source}: valid; store {cfg.store.description}')
" "$PREFIX/etc/gateway.toml"
"$PREFIX/venv/bin/gateway" --version
