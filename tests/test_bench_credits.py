"""bench/credits_fleet.py in its quick form (500 credits, no kill), so the measurement of credits
across two nodes that docs/plans-and-credits.md quotes keeps working: exactly the credits held
are admitted, the rest refused with 429, and the upstream is sent exactly the admitted ones."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tests.support import require_postgres, run_bench_script, unavailable


def test_two_nodes_under_load_admit_exactly_the_credits_held(tmp_path: Path) -> None:
    require_postgres()
    for tool, package in (("wrk", "wrk"), ("nginx", "nginx-light")):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            unavailable(f"no {tool} (apt-get install {package})")
    out = tmp_path / "credits.json"
    command = [sys.executable, "bench/credits_fleet.py", "--credits", "500", "--seconds", "2"]
    command += ["--json", str(out)]
    returncode, stderr = run_bench_script(command, timeout=120, grace=60)
    assert returncode == 0, stderr
    figures = json.loads(out.read_text())
    statuses = figures["statuses"]
    assert statuses["200"] == 500 and statuses["429"] > 0
    assert statuses["other"] == {} and statuses["errors"] == {}
    assert figures["admitted_per_node"] == figures["upstream_saw"]
    assert sum(figures["upstream_saw"].values()) == 500
    assert figures["balance_at_end"] == 0
