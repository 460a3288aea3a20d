"""The installed distribution's version: what ``gateway --version`` prints and the
``gateway_build_info`` metric carries.

The distribution is ``authgateway`` (the name on the package index); the command it installs is
``gateway``. The version is read from the installed metadata, so pyproject.toml is its one place.
"""

from __future__ import annotations

import importlib.metadata

DISTRIBUTION = "authgateway"

try:
    VERSION = importlib.metadata.version(DISTRIBUTION)
except importlib.metadata.PackageNotFoundError:  # run from a source tree never installed
    VERSION = "unknown"
