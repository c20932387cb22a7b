"""The resource-limit harness itself: it runs the CLI, and a runaway allocation under it fails small and fast."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import run_cli_limited, run_limited


def test_the_cli_runs_within_the_default_limits(tmp_path: Path) -> None:
    result = run_cli_limited(["--version"], tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("lstm-forecast ")


def test_an_allocation_past_the_limit_fails_in_the_child(tmp_path: Path) -> None:
    grow = "import numpy\nnumpy.ones(2**29)\n"  # 4 GiB of float64 under a 1 GiB limit
    result = run_limited([sys.executable, "-c", grow], tmp_path, memory=1024**3)
    assert result.returncode != 0 and "MemoryError" in result.stderr
