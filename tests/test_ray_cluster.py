"""A real two-node Ray cluster on this machine: a head and a second node, each its own ``ray start``
process, and a run whose second node is killed while one of its trials runs.

The head offers 1 CPU and the custom resource ``head``; the second node 2 CPUs and ``second``. The
trials are ``node-sleeper`` (tests/fake_strategies.py): each writes which node it runs on, then
sleeps. Every process the test starts is stopped by its process group and, for Ray's own children,
by the temporary folder their command lines name; ``ray stop`` is never called (it would stop every
Ray instance on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import fake_strategies
import pytest

pytest.importorskip("ray")
FAKES_SCRIPT = Path(fake_strategies.__file__)
SEEDS = 6
"""node-sleeper trials: with 3 CPUs in the cluster, three at a time, on both nodes."""
SLEEP = 8
"""Seconds each node-sleeper trial sleeps."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ray_start(arguments: list[str], temp_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start ... --block`` as its own process group, once it says the node is up."""
    ray_cli = Path(sys.executable).with_name("ray")
    process = subprocess.Popen(
        [str(ray_cli), "start", "--block", "--disable-usage-stats", *arguments],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if "block forever" in line:
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep draining its output
            return process
        if not line and process.poll() is not None:
            break
    _kill(process, temp_dir)
    raise RuntimeError("ray start did not come up:\n" + "".join(seen[-20:]))


def _kill(process: subprocess.Popen, temp_dir: Path | None = None) -> None:
    """Kill ``process``, every process under it, and (for the head) any process whose command line names
    ``temp_dir``: Ray's daemons may leave the process group, not the process tree."""
    import psutil

    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    if temp_dir is not None:
        family += [
            other for other in psutil.process_iter(["cmdline"]) if any(str(temp_dir) in part for part in other.info["cmdline"] or [])
        ]
    for member in family:
        with contextlib.suppress(psutil.Error):
            member.kill()
    process.wait(timeout=30)


@pytest.fixture()
def two_nodes() -> Iterator[tuple[str, subprocess.Popen, dict[str, str]]]:
    """(head address, the second node's process, the environment) of a fresh two-node cluster."""
    temp_dir = Path(tempfile.mkdtemp(prefix="srt-", dir="/tmp"))  # short: Ray's socket paths must stay short
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(FAKES_SCRIPT.parent), os.environ.get("PYTHONPATH")])),
        "RAY_AUTH_MODE": "disabled",  # a throwaway cluster on one machine: no token to hand to the second node and the driver
    }
    port = _free_port()
    head = _ray_start(
        ["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", '--resources={"head": 1}',
         "--include-dashboard=false", f"--temp-dir={temp_dir}"],
        temp_dir,
        env,
    )  # fmt: skip
    second = None
    try:
        second = _ray_start(
            [f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", '--resources={"second": 1}'],
            temp_dir,
            env,
        )
        yield f"127.0.0.1:{port}", second, env
    finally:
        if second is not None:
            _kill(second)
        _kill(head, temp_dir)


def _ran_on(trial_dir: Path) -> list[str]:
    """The nodes a node-sleeper trial's attempts ran on, as its markers say."""
    return [marker.read_text() for marker in trial_dir.glob("ran-on.*")]


def _kill_when_the_second_node_runs_a_trial(run_dir: Path, second: subprocess.Popen, killed: dict) -> None:
    """Once a trial has finished on the second node (its record written), kill that node as soon as another
    trial runs there: the cluster did work on both nodes, and the kill lands mid-trial."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        trial_dirs = list((run_dir / "artifacts").glob("node-sleeper.*"))
        finished = [d for d in trial_dirs if (run_dir / "trials" / f"{d.name}.json").exists()]
        running = [  # started on the second node less than half its sleep ago: surely still running
            d
            for d in trial_dirs
            if d not in finished and _ran_on(d) == ["second"] and time.time() - next(d.glob("ran-on.*")).stat().st_mtime < SLEEP / 2
        ]
        if running and any(_ran_on(d) == ["second"] for d in finished):
            killed["trial"] = running[0].name
            _kill(second)
            return
        time.sleep(0.2)


def test_a_killed_node_loses_and_repeats_no_trial(two_nodes, toy_task_file, tmp_path):
    address, second, env = two_nodes
    output = tmp_path / "runs"
    run_dir = output / "toy-sentiment" / "cluster"
    killed: dict = {}
    watcher = threading.Thread(target=_kill_when_the_second_node_runs_a_trial, args=(run_dir, second, killed), daemon=True)
    watcher.start()
    started = time.monotonic()
    driver = subprocess.run(
        [sys.executable, str(FAKES_SCRIPT), "run", "--task", str(toy_task_file), "--strategies", "node-sleeper,majority",
         "--seeds", ",".join(map(str, range(SEEDS))), "--profile", "smoke", "--data-dir", str(toy_task_file.parent),
         "--output", str(output), "--run-id", "cluster", "--no-progress", "--executor", "ray", "--ray-address", address,
         "--threads-per-trial", "1"],
        env={**env, "SLMBENCH_TEST_SLEEP_SECONDS": str(SLEEP)},
        capture_output=True,
        text=True,
        timeout=420,
    )  # fmt: skip
    watcher.join(timeout=5)
    assert driver.returncode == 0, driver.stderr[-3000:]
    assert time.monotonic() - started < 400
    assert killed, "no trial ever ran on the second node"

    trial_files = sorted((run_dir / "trials").glob("*.json"))
    records = {path.stem: json.loads(path.read_text()) for path in trial_files}
    expected = {f"{name}.seed{seed}" for name in ("node-sleeper", "majority") for seed in range(SEEDS)}
    assert set(records) == expected  # none lost, none extra
    assert all(record["status"] == "ok" for record in records.values()), {k: r["error"] for k, r in records.items() if r["status"] != "ok"}
    assert len({record["config_hash"] for record in records.values()}) == len(expected)  # none duplicated

    victim = records[killed["trial"]]
    head_node = victim["environment"]["node"]  # retried there: the only node left
    assert sorted(_ran_on(run_dir / "artifacts" / killed["trial"])) == ["head", "second"]  # killed on the second node, rerun once
    on_second = [key for key, record in records.items() if record["environment"]["node"] != head_node]
    assert on_second and all(_ran_on(run_dir / "artifacts" / key) == ["second"] for key in on_second if key.startswith("node-sleeper"))
    assert "left the cluster" in driver.stderr and "retried" in driver.stderr
    # what the note reports: the node of each trial, and the killed trial's attempts
    nodes = {head_node: "head"}
    print(json.dumps({key: nodes.get(records[key]["environment"]["node"], "second") for key in sorted(records)}, indent=1))
    print(
        "killed mid-trial:",
        killed["trial"],
        "; driver's line:",
        [line for line in driver.stderr.splitlines() if "left the cluster" in line],
    )
