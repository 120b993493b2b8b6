"""The Ray executor against a real local Ray instance, started once for the test session (never a mock).

The instance has 8 logical CPUs and 4 fake GPUs (Ray counts what it is told), so resource requests
and the packing of GPU trials can be checked on a machine without GPUs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fake_strategies
import pytest

from slmbench.common.progress import ProgressReporter
from slmbench.engine.run_options import RunOptions
from slmbench.engine.runner import run_benchmark

ray = pytest.importorskip("ray")
FAKES_SCRIPT = Path(fake_strategies.__file__)


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray instance for the whole session; its workers can import the test helpers."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKES_SCRIPT.parent), os.environ.get("PYTHONPATH")]))
    context = ray.init(
        num_cpus=8,
        num_gpus=4,
        include_dashboard=False,
        logging_level="error",
        runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"], "HF_HUB_OFFLINE": "1"}},
    )
    yield context.address_info["address"]
    ray.shutdown()


def _options(task: Path, output: Path, strategies: str, **extra) -> RunOptions:
    """The smoke profile on the toy task ``task`` (its data beside it)."""
    return RunOptions(
        task=str(task),
        strategies=strategies,
        profile="smoke",
        data_dir=str(task.parent),
        output=str(output),
        **extra,
    )


def _records(run_dir: Path) -> dict[str, dict]:
    return {p.relative_to(run_dir / "trials").as_posix(): json.loads(p.read_text()) for p in (run_dir / "trials").rglob("*.json")}


def _executor(**settings):
    from slmbench.engine.executors import RayExecutor

    return RayExecutor(**{"workers": 2, "threads_per_trial": 1, **settings})


def test_ray_gives_the_local_executor_s_predictions(ray_address, registry, toy_task_file, tmp_path):
    """Deterministic strategies, two seeds each: the same predictions whichever executor ran them."""
    options = {"strategies": "embedding-classifier,knn-vote", "seeds": [0, 1]}
    local = run_benchmark(_options(toy_task_file, tmp_path / "local", **options), registry, ProgressReporter(False))
    parallel = run_benchmark(_options(toy_task_file, tmp_path / "ray", **options), registry, ProgressReporter(False), executor=_executor())
    assert sorted(parallel.ran) == sorted(local.ran) == [f"{s}.seed{n}" for s in ("embedding-classifier", "knn-vote") for n in (0, 1)]
    local_records, ray_records = _records(local.run_dir), _records(parallel.run_dir)
    for key, record in ray_records.items():
        assert record["status"] == "ok", record["error"]
        assert record["predictions"] == local_records[key]["predictions"], key
    report = (parallel.run_dir / "report.md").read_text()
    assert "accuracy across seeds (sd; min–max)" in report
    assert all(record["resources"] == {"CPU": 1.0, "GPU": 0.0} for record in ray_records.values())
    assert "Trials ran as Ray tasks" in report and "| knn-vote | 1 | 0 |" in report  # the protocol states the shares
    assert "Trials ran as Ray tasks" not in (local.run_dir / "report.md").read_text()


def test_a_worker_killed_mid_trial_is_retried(ray_address, registry, toy_task_file, tmp_path):
    result = run_benchmark(
        _options(toy_task_file, tmp_path, "dies-once"), registry, ProgressReporter(False), executor=_executor(max_retries=2)
    )
    (record,) = _records(result.run_dir).values()
    assert record["status"] == "ok", record["error"]
    assert (result.run_dir / "artifacts" / "dies-once.seed0" / "died-once").exists()  # it did die once


def test_an_exception_in_a_strategy_is_a_failed_trial_not_retried(ray_address, registry, toy_task_file, tmp_path):
    result = run_benchmark(
        _options(toy_task_file, tmp_path, "exploding,majority"), registry, ProgressReporter(False), executor=_executor(max_retries=2)
    )
    records = _records(result.run_dir)
    assert records["exploding.seed0.json"]["status"] == "failed"
    assert records["exploding.seed0.json"]["error"]["type"] == "MemoryError"
    assert records["majority.seed0.json"]["status"] == "ok"


def test_a_trial_past_its_time_limit_is_stopped_and_the_others_finish(ray_address, registry, toy_task_file, tmp_path):
    options = _options(toy_task_file, tmp_path, "sleeper,majority", options={"sleeper": {"seconds": [600]}})
    result = run_benchmark(options, registry, ProgressReporter(False), executor=_executor(timeout_seconds=30))  # majority: ~1 s, unloaded
    records = _records(result.run_dir)
    assert records["sleeper.seed0.json"]["status"] == "timeout"
    assert "30 s trial time limit" in records["sleeper.seed0.json"]["error"]["message"]
    assert records["majority.seed0.json"]["status"] == "ok"


def test_the_time_limit_counts_running_time_not_time_waiting_for_room(ray_address, registry, toy_task_file, tmp_path):
    """Five 12 s trials, room for two at a time (8 CPUs, 4 threads each), a 30 s limit: the last waits two
    rounds (24 s or more) for room, then runs 12 s; counted from submission it would pass the limit."""
    executor = _executor(workers=5, threads_per_trial=4, timeout_seconds=30)
    options = _options(toy_task_file, tmp_path, "sleeper", seeds=list(range(5)), options={"sleeper": {"seconds": [12]}})
    result = run_benchmark(options, registry, ProgressReporter(False), executor=executor)
    statuses = {key: record["status"] for key, record in _records(result.run_dir).items()}
    assert statuses == {f"sleeper.seed{seed}.json": "ok" for seed in range(5)}


def test_interrupt_keeps_finished_trials_and_resume_reruns_nothing_finished(ray_address, toy_task_file, tmp_path):
    log = tmp_path / "fits.log"
    env = {**os.environ, "SLMBENCH_TEST_LOG": str(log), "PYTHONPATH": os.environ["PYTHONPATH"]}
    command = [
        sys.executable,
        str(FAKES_SCRIPT),
        "run",
        "--task",
        str(toy_task_file),
        "--strategies",
        "majority,sleeper,last-label",
        "--profile",
        "smoke",
        "--data-dir",
        str(toy_task_file.parent),
        "--no-progress",
        "--executor",
        "ray",
        "--ray-address",
        ray_address,
        "--workers",
        "1",
    ]
    interrupted = subprocess.Popen([*command, "--output", str(tmp_path)], env=env)
    deadline = time.monotonic() + 180
    while "sleeper" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.2)
    interrupted.send_signal(signal.SIGINT)
    assert interrupted.wait(timeout=120) == 130
    run_dir = tmp_path / "toy-sentiment" / "smoke"
    records = _records(run_dir)
    assert records["majority.seed0.json"]["status"] == "ok" and records["sleeper.seed0.json"]["status"] == "cancelled"
    assert "last-label.seed0.json" not in records

    resumed = subprocess.run(
        [
            sys.executable,
            str(FAKES_SCRIPT),
            "run",
            "--resume",
            str(run_dir),
            "--executor",
            "ray",
            "--ray-address",
            ray_address,
            "--no-progress",
        ],
        env={**env, "SLMBENCH_TEST_SLEEP_SECONDS": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    first, resumed = log.read_text().split()[:2], log.read_text().split()[2:]
    assert first == ["majority", "sleeper"]  # majority finished: not rerun; the trials resumed run in parallel
    assert sorted(resumed) == ["last-label", "sleeper", "sleeper:woke"]


@ray.remote(num_cpus=0)
class Barrier:
    """Counts arrivals, so trials can prove they ran at the same time without timing anything."""

    def __init__(self) -> None:
        self.arrived = 0

    def arrive(self) -> int:
        self.arrived += 1
        return self.arrived

    def count(self) -> int:
        return self.arrived


def _gpu_probe(barrier, expected: int) -> tuple[list, bool]:
    """A stand-in trial: its GPU ids, and whether all ``expected`` trials were running at once."""
    barrier.arrive.remote()
    deadline = time.monotonic() + 120
    while ray.get(barrier.count.remote()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return ray.get_gpu_ids(), ray.get(barrier.count.remote()) >= expected


def _planned(registry, name: str, device: str = "cuda", model: str = "") -> Any:
    """A planned trial of strategy ``name`` on ``device`` (no run folder needed to ask for resources)."""
    from slmbench.engine.planning import PlannedTrial
    from slmbench.records import ModelsConfig, TrialConfig
    from slmbench.tasks.profiles import get_profile

    models = ModelsConfig(causal_lm=model, embedding_model="", device=device, dtype="auto")
    config = TrialConfig(strategy=name, task_path="t.yaml", profile=get_profile("smoke"), models=models)
    return PlannedTrial(f"{name}.seed0", name, config, registry.strategy(name), Path("."))


@pytest.mark.parametrize(("gpus_per_trial", "together"), [(0.5, 8), (1.0, 4)])
def test_gpu_trials_request_their_share_and_pack_onto_the_gpus(ray_address, registry, gpus_per_trial, together):
    """On CUDA a trial asks for ``--gpus-per-trial`` GPUs: 4 GPUs run 8 half-GPU trials (two per GPU) at once, or
    4 one-GPU trials; a CPU trial asks for none."""
    executor = _executor(workers=8, gpus_per_trial=gpus_per_trial)
    request = executor.resources(_planned(registry, "knn-vote"))
    assert request == {"CPU": 1.0, "GPU": gpus_per_trial}
    assert executor.resources(_planned(registry, "knn-vote", device="cpu"))["GPU"] == 0
    barrier = Barrier.remote()
    probe = ray.remote(_gpu_probe).options(num_cpus=request["CPU"], num_gpus=request["GPU"])
    results = ray.get([probe.remote(barrier, together) for _ in range(together)], timeout=300)
    assert all(met for _, met in results)  # all of them ran at the same time
    ids = [gpu for gpu_ids, _ in results for gpu in gpu_ids]
    assert len(ids) == together and all(ids.count(gpu) == round(1 / gpus_per_trial) for gpu in set(ids))


def test_each_strategy_asks_for_the_gpu_share_it_needs(ray_address, registry, tmp_path, monkeypatch):
    """None for the strategies that never touch a GPU, ``--gpus-per-trial`` for the rest, a whole GPU for a
    trial whose memory estimate does not fit that share (full-finetune here: the GPU's memory is set, through
    ``SLMBENCH_DEVICE_MEMORY_MB``, between lora's need and full-finetune's). The packing on 4 fake GPUs:
    every trial at once."""
    from transformers import Qwen2Config

    from slmbench.engine.executors import trial_memory_estimate

    model = tmp_path / "qwen2.5-0.5b-config"  # Qwen2.5-0.5B's shape, no weights: the estimate reads the config only
    Qwen2Config(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936
    ).save_pretrained(model)
    trials = {
        name: _planned(registry, name, model=str(model))
        for name in ("tfidf-linear", "ensemble", "majority", "knn-vote", "lora", "full-finetune")
    }
    lora, full = (trial_memory_estimate(trials[name]) for name in ("lora", "full-finetune"))
    assert lora is not None and full is not None and lora.total_mb < full.total_mb
    monkeypatch.setenv("SLMBENCH_DEVICE_MEMORY_MB", str(lora.total_mb + full.total_mb))  # half a GPU lies between them
    executor = _executor(workers=8, gpus_per_trial=0.5)
    shares = {name: executor.resources(planned)["GPU"] for name, planned in trials.items()}
    assert shares == {"tfidf-linear": 0, "ensemble": 0, "majority": 0, "knn-vote": 0.5, "lora": 0.5, "full-finetune": 1.0}
    assert sum(shares.values()) <= ray.cluster_resources()["GPU"]  # on 4 GPUs all six run at once


def test_asking_for_more_gpus_than_the_cluster_has_fails_at_once_with_a_clear_line(ray_address, toy_task_file, tmp_path, capsys):
    """No hang: the run stops before submitting anything, saying what the trials ask and what the cluster has."""
    from slmbench.cli.main import main

    started = time.monotonic()
    code = main(
        ["run", "--task", str(toy_task_file), "--strategies", "knn-vote", "--profile", "smoke", "--data-dir", str(toy_task_file.parent),
         "--output", str(tmp_path), "--no-progress", "--executor", "ray", "--ray-address", ray_address, "--gpus-per-trial", "8",
         "--device", "cuda"]
    )  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 60
    assert "knn-vote.seed0" in error and "1 CPU, 8 GPU" in error and "no node of the Ray cluster has that" in error
    assert "4 GPU" in error and "lower --gpus-per-trial" in error and "Traceback" not in error


def _where(cache) -> tuple[list, bool, int]:
    """A stand-in for a check run through ``RayExecutor.call``: the GPU ids Ray gave it, whether it got no model
    cache (a worker loads its own models), its process id."""
    return [str(gpu) for gpu in ray.get_gpu_ids()], cache is None, os.getpid()


def test_a_call_runs_in_a_worker_with_a_trial_s_gpu_share_on_cuda_and_none_on_cpu(ray_address):
    executor = _executor(gpus_per_trial=0.5)
    gpus, fresh, process = executor.call(_where, device="cuda:0")
    assert len(gpus) == 1 and fresh and process != os.getpid()
    assert executor.call(_where, device="cpu")[0] == []


def test_the_deployment_check_of_a_ray_run_runs_in_a_worker(ray_address, registry, toy_task_file, tmp_path):
    options = _options(toy_task_file, tmp_path, "quantizable", deployment_check="all", export_check="none")
    result = run_benchmark(options, registry, ProgressReporter(False), executor=_executor())
    [check] = _records(result.run_dir)["quantizable.seed0.json"]["deployment"]
    assert check["quantization"] == "int8" and check["error"] is None and check["accuracy"] is not None
    assert check["size_bytes"] != os.getpid()  # the fake copy's "size" is the process that checked it: a worker
