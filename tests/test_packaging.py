"""The packaged configs: `--config NAME`, `config show` / `config list`, tune's default space, and the wheel.

The configs live in lstm_forecast/configs/ and ship as package data, so an installed wheel (run from any
folder) has what the README names. The last test builds that wheel and runs it from outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import error_line
from typer.testing import CliRunner

import lstm_forecast
from lstm_forecast import tune
from lstm_forecast.cli import app
from lstm_forecast.config import load_config, packaged_configs, resolve_config
from lstm_forecast.search_space import load_space

PACKAGE = Path(lstm_forecast.__file__).resolve().parent
SHIPPED = ("default", "global", "quick", "search", "tsla")
RUN_CONFIGS = "default, global, quick, tsla"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_the_packaged_configs_are_files_inside_the_package():
    configs = packaged_configs()
    assert tuple(configs) == SHIPPED
    for name, path in configs.items():
        assert path == PACKAGE / "configs" / f"{name}.yaml" and path.is_file()


@pytest.mark.parametrize("given", ["quick", "quick.yaml"])
def test_a_bare_name_is_the_packaged_config(clean_workdir, given):
    assert resolve_config(given) == PACKAGE / "configs" / "quick.yaml"
    config = load_config(given)
    assert (config.train.epochs, config.model.hidden_size) == (3, 16)  # quick.yaml's values, not the defaults


@pytest.mark.parametrize("given", ["quick", "quick.yaml"])
def test_an_existing_file_wins_over_the_packaged_name(clean_workdir, given):
    (clean_workdir / given).write_text("train:\n  epochs: 9\n")
    assert resolve_config(given) == Path(given)
    assert load_config(given).train.epochs == 9


def test_an_unknown_name_is_one_usage_error_naming_the_packaged_configs(clean_workdir):
    result = invoke("train", "-t", "SYN", "--config", "quik")
    assert result.exit_code == 2
    line = error_line(result)
    assert line.startswith("Error: quik: config file not found, nor a packaged config")
    assert RUN_CONFIGS in line and "config show" in line


def test_a_missing_path_is_not_taken_for_a_packaged_name(clean_workdir):
    result = invoke("train", "-t", "SYN", "--config", "./quick")
    assert result.exit_code == 2
    assert error_line(result) == "Error: ./quick: config file not found"


@pytest.mark.parametrize("given", ["a" * 300, "x/" + "a" * 300])
def test_a_name_no_file_can_have_is_a_usage_error(clean_workdir, given):
    result = invoke("train", "-t", "SYN", "--config", given)
    assert result.exit_code == 2, result.output
    error_line(result)


def test_the_search_space_is_not_a_run_config(clean_workdir):
    result = invoke("train", "-t", "SYN", "--config", "search")
    assert result.exit_code == 2
    assert "tune's packaged search space" in error_line(result)


def test_tunes_default_space_is_the_packaged_search_yaml():
    assert tune.DEFAULT_SPACE == PACKAGE / "configs" / "search.yaml"
    assert load_space(tune.DEFAULT_SPACE, load_config()).dimensions


@pytest.mark.parametrize(("args", "name"), [((), "default"), (("quick",), "quick"), (("search.yaml",), "search")])
def test_config_show_prints_the_packaged_file_verbatim(clean_workdir, args, name):
    result = invoke("config", "show", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout == (PACKAGE / "configs" / f"{name}.yaml").read_text(encoding="utf-8")


def test_config_show_json_and_an_unknown_name(clean_workdir):
    document = json.loads(invoke("config", "show", "tsla", "--json").stdout)
    assert document["text"] == (PACKAGE / "configs" / "tsla.yaml").read_text(encoding="utf-8")
    result = invoke("config", "show", "nope")
    assert result.exit_code == 2
    line = error_line(result)
    assert "'nope'" in line and "default, global, quick, search, tsla" in line


def test_config_list_names_each_with_its_first_comment_line(clean_workdir):
    result = invoke("config", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(SHIPPED)
    for line, path in zip(lines, packaged_configs().values(), strict=True):
        assert line.endswith(path.read_text().splitlines()[0].lstrip("# "))
    rows = json.loads(invoke("config", "list", "--json").stdout)["configs"]
    assert [row["name"] for row in rows] == list(SHIPPED)


def run_offline(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A child process with pip kept off the network (the wheel builds from what is installed here)."""
    full = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(env or {})}
    return subprocess.run(argv, cwd=cwd, env=full, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_an_installed_wheel_has_the_configs_from_any_folder(tmp_path):
    # Build from a copy of the sources, so the checkout gets no build/ or egg-info folder.
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / "lstm_forecast", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PACKAGE.parent / name, source / name)
    built = run_offline([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                         "-w", str(tmp_path / "dist")], tmp_path)
    if built.returncode != 0:
        pytest.skip(f"cannot build the wheel offline here: {built.stderr.strip()[-300:]}")
    (wheel,) = (tmp_path / "dist").glob("lstm_forecast-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in SHIPPED:
            member = f"lstm_forecast/configs/{name}.yaml"
            assert archive.read(member) == (PACKAGE / "configs" / f"{name}.yaml").read_bytes(), member

    site = tmp_path / "site"
    installed = run_offline([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
                            tmp_path)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"  # no configs/ folder here: only the package's own can answer
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "LSTM_FORECAST_DEBUG": ""}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run_offline([sys.executable, "-m", "lstm_forecast", *args], elsewhere, env)

    probe = ("import lstm_forecast, lstm_forecast.tune as tune\n"
             "from lstm_forecast.config import load_config\n"
             "from lstm_forecast.search_space import load_space\n"
             "print(lstm_forecast.__file__)\n"
             "print(load_config('quick').train.epochs, tune.DEFAULT_SPACE)\n"
             "print(len(load_space(tune.DEFAULT_SPACE, load_config('quick')).dimensions))\n")
    done = run_offline([sys.executable, "-c", probe], elsewhere, env)
    assert done.returncode == 0, done.stderr
    module, values, dimensions = done.stdout.splitlines()
    assert Path(module).resolve().is_relative_to(site.resolve()), module  # the wheel's copy, not the checkout's
    assert values == f"3 {site / 'lstm_forecast' / 'configs' / 'search.yaml'}"
    assert int(dimensions) >= 1

    shown = cli("config", "show", "quick")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (PACKAGE / "configs" / "quick.yaml").read_text(encoding="utf-8")
    assert cli("tune", "--help").returncode == 0
    refused = cli("train", "-t", "SYN", "--config", "quik")
    assert refused.returncode == 2 and RUN_CONFIGS in refused.stderr
