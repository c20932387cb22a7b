"""Joining a Ray cluster: a real token-authenticated `ray start` cluster on loopback (a head and one more node),
and the addresses that are no Ray cluster at all. Each failure is one line, within seconds, and leaves no
`_universe/<id>/` folder behind."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES, build_prices, write_caches

from lstm_forecast import executors, universe
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError, UsageError

TICKERS = ["AAA", "BBB"]
LOOPBACK = "127.0.0.1"
REAL_CONNECT = socket.socket.connect  # taken before the autouse no_network fixture replaces it
REAL_CREATE_CONNECTION = socket.create_connection
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
START_TIMEOUT_S = 40


@pytest.fixture
def loopback(no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections to this machine's loopback are allowed (any other address still fails the test)."""

    def connect(self: socket.socket, address: object) -> None:
        if self.family != socket.AF_UNIX:
            assert isinstance(address, tuple) and address[0] == LOOPBACK, f"not loopback: {address}"
        REAL_CONNECT(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", REAL_CREATE_CONNECTION)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    prices = {ticker: build_prices(260, seed=seed) for seed, ticker in enumerate(TICKERS)}
    return write_caches(tmp_path / "data", prices)


@pytest.fixture
def no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Ray token anywhere this process would look: no variables, and a home without ~/.ray/auth_token."""
    for variable in AUTH_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def train_on(address: str, data_dir: Path, runs_dir: Path) -> universe.Universe:
    config = load_config(None, TINY_OVERRIDES)
    return universe.train_universe(config, TICKERS, data_dir, runs_dir, executor="ray", ray_address=address)


def assert_nothing_left(runs_dir: Path) -> None:
    assert not list(runs_dir.glob("_universe/*")), "a universe folder was left behind"


# --- addresses that are no Ray cluster --------------------------------------------------------------------


def test_a_port_nothing_listens_on_is_one_line_and_leaves_no_folder(tmp_path, data_dir, loopback, no_token):
    pytest.importorskip("ray")
    address = f"{LOOPBACK}:{free_port()}"
    with pytest.raises(ForecastError, match=rf"^cannot reach the Ray cluster at '{address}': Connection refused"):
        train_on(address, data_dir, tmp_path / "runs")
    assert_nothing_left(tmp_path / "runs")


def test_a_port_that_accepts_and_says_nothing_is_one_line_and_leaves_no_folder(
    tmp_path, data_dir, loopback, no_token, monkeypatch
):
    pytest.importorskip("ray")
    monkeypatch.setattr(executors, "RAY_CONNECT_TIMEOUT_S", 1)
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen()  # the kernel accepts connections; nobody ever answers them
        address = f"{LOOPBACK}:{silent.getsockname()[1]}"
        with pytest.raises(ForecastError, match=rf"^'{address}' accepts connections but does not answer as a Ray "
                                                r"cluster within 1 s; give the head's port"):
            train_on(address, data_dir, tmp_path / "runs")
    assert_nothing_left(tmp_path / "runs")


def test_ray_missing_is_a_usage_error_that_leaves_no_folder(tmp_path, data_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    with pytest.raises(UsageError, match=r"^--executor ray needs Ray"):
        train_on(f"{LOOPBACK}:6379", data_dir, tmp_path / "runs")
    assert_nothing_left(tmp_path / "runs")


# --- a real cluster ------------------------------------------------------------------------------------------


def start_node(arguments: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`ray start --block …` in a process group of its own, once it says the node runs; skips when it cannot."""
    ray_command = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    if ray_command is None:
        pytest.skip("no `ray` command")
    with open(log, "wb") as output:
        node = subprocess.Popen([ray_command, "start", "--block", "--disable-usage-stats", *arguments], env=env,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while b"Ray runtime started" not in log.read_bytes():
        if node.poll() is not None or time.monotonic() > deadline:
            stop_nodes([node])
            pytest.skip(f"`ray start` failed: {log.read_text(errors='replace')[-300:]}")
        time.sleep(0.2)
    return node


def stop_nodes(nodes: list[subprocess.Popen]) -> None:
    """SIGTERM each `ray start --block` (it stops its node's processes), then SIGKILL what is left of the groups."""
    for node in nodes:
        if node.poll() is None:
            node.terminate()
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)  # a group of its own: only the processes this node started


@pytest.fixture
def token_cluster(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A head with token authentication on (`ray start --head`, no CPUs of its own, so every task runs on the
    other node) and one more node joined with `ray start --address`; yields its address and token."""
    pytest.importorskip("ray")
    token = secrets.token_hex(16)
    port = free_port()
    # Ray's session files under a short path of their own (Unix socket paths are limited to ~100 characters).
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(start_node(["--head", "--port", str(port), "--node-ip-address", LOOPBACK, "--num-cpus", "0",
                                 "--include-dashboard", "false", "--temp-dir", temp_dir], env, tmp_path / "head.log"))
        nodes.append(start_node(["--address", f"{LOOPBACK}:{port}", "--node-ip-address", LOOPBACK,
                                 "--num-cpus", "2"], env, tmp_path / "node.log"))
        yield f"{LOOPBACK}:{port}", token
    finally:
        stop_nodes(nodes)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_a_token_cluster_is_joined_with_the_token_ray_reads(
    tmp_path, data_dir, loopback, no_token, token_cluster, monkeypatch, capfd
):
    address, token = token_cluster
    runs_dir = tmp_path / "runs"
    with pytest.raises(ForecastError, match=rf"^the Ray cluster at '{address}' asks for a token and none was "
                                            r"found: set RAY_AUTH_TOKEN to the head's token"):
        train_on(address, data_dir, runs_dir)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 32)
    with pytest.raises(ForecastError, match=rf"^the Ray cluster at '{address}' refused this machine's token"):
        train_on(address, data_dir, runs_dir)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    with pytest.raises(ForecastError, match=r"^RAY_AUTH_MODE is token but no Ray token was found: set RAY_AUTH_TOKEN"):
        train_on(address, data_dir, runs_dir)
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ForecastError, match=r"^RAY_AUTH_TOKEN_PATH '.*' cannot be read or is empty: set "):
        train_on(address, data_dir, runs_dir)
    assert_nothing_left(runs_dir)
    assert "gcs_client" not in capfd.readouterr().err  # Ray's C++ client said nothing on the way

    token_file = tmp_path / "token"
    token_file.write_text(token)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    trained = train_on(address, data_dir, runs_dir)
    assert [row["ticker"] for row in trained.rows] == TICKERS
    assert all(row["status"] == "ok" for row in trained.rows), trained.rows
    assert len(list(runs_dir.glob("*/*/bundle.json"))) == len(TICKERS)
    assert "RAY_AUTH_MODE" not in os.environ  # the token mode was for the connection only
