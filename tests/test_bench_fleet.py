"""bench/fleet.py in its quick form (two nodes), so the scale simulation docs/fleet.md quotes
keeps working: its figures are there and the connections it counts are the table's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support import require_postgres, run_bench_script


def test_the_fleet_bench_runs_and_counts_what_the_table_says(tmp_path: Path) -> None:
    require_postgres()
    out = tmp_path / "fleet.json"
    command = [sys.executable, "bench/fleet.py", "--nodes", "2", "--revocations", "2"]
    command += ["--rest-seconds", "2", "--idle", "1", "--settle", "2.5", "--json", str(out)]
    returncode, stderr = run_bench_script(command, timeout=180, grace=30)
    assert returncode == 0, stderr
    figures = json.loads(out.read_text())
    held = figures["connections_at_rest"]
    expected = figures["connections_expected"]
    assert held["gateway-listen"] == 2  # one per node
    assert 2 <= held["gateway"] <= 2 * (expected["per_node_most"] - 1)
    assert figures["queries_per_second_at_rest"] > 0
    assert 0 < figures["fan_out_ms"]["median"] <= figures["fan_out_ms"]["max"] < 1500
