"""Runs published into one runs dir at once by separate processes each succeed or fail alone: two global runs,
a universe and a single ticker's run, started together into a runs dir that does not exist yet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES, build_prices, write_caches

from lstm_forecast.bundle import load_run

CHILD_TIMEOUT_S = 120


@pytest.mark.slow
def test_runs_started_together_into_one_runs_dir_each_publish_alone(tmp_path: Path):
    data_dir = write_caches(tmp_path / "data", {name: build_prices(260, seed=seed)
                                                 for seed, name in enumerate(["AAA", "BBB", "CCC"])})
    runs_dir = tmp_path / "runs" / "nested"  # created by whichever process gets there first
    sets = [part for override in TINY_OVERRIDES for part in ("--set", override)]
    common = ["--data-dir", str(data_dir), "--runs-dir", str(runs_dir), "--json", *sets]
    commands = [
        ["train", "--all", "--scope", "global", *common],
        ["train", "--all", "--scope", "global", *common],
        ["train", "-t", "AAA,BBB", *common],
        ["train", "-t", "CCC", *common],
    ]
    children = [subprocess.Popen([sys.executable, "-m", "lstm_forecast", *command], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env={"OMP_NUM_THREADS": "1", "PATH": ""},
                                 cwd=tmp_path) for command in commands]
    outputs = [child.communicate(timeout=CHILD_TIMEOUT_S) for child in children]
    for child, (_, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr[-2000:]
    global_runs = [Path(json.loads(stdout)["run_dir"]) for stdout, _ in outputs[:2]]
    assert global_runs[0] != global_runs[1]
    for run_dir in [*global_runs, Path(json.loads(outputs[3][0])["run_dir"])]:
        assert load_run(run_dir).run_dir == run_dir
    universe = json.loads(outputs[2][0])
    assert universe["trained"] == 2
