"""The scripts in benchmarks/, each in its small mode, for real: nothing else runs them, so without these
tests they stop working unnoticed when the code they measure moves.

Each runs as its own process, as a user runs it (the scripts set torch's thread count and start Ray),
on a few examples; the assertions are on the figures it writes (``--json``). Those that load the
embedded models are ``integration`` tests and read the real data; the others run on toy rows in the
real data's format (the ``toy_data_dir`` fixture).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_small(script: str, data_dir: Path, json_path: Path, *extra: str, timeout: float = 300) -> dict[str, Any]:
    """``benchmarks/<script>.py --small`` on ``data_dir``; the figures it wrote to ``json_path``."""
    command = [sys.executable, str(BENCHMARKS / f"{script}.py"), "--small", "--data-dir", str(data_dir), "--json", str(json_path), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SLMBENCH_DATA_DIR": str(data_dir)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=BENCHMARKS.parent)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return json.loads(json_path.read_text())


@pytest.mark.integration
@pytest.mark.real_data
def test_train_throughput_small_mode_trains_every_set_up_and_compares_them(shared_data_dir, tmp_path):
    from slmbench_plugins.lora import LoraOptions

    figures = run_small("train_throughput", shared_data_dir, tmp_path / "train.json")

    assert figures["args"]["examples"] == 8 and figures["args"]["threads"] == 1
    peak = figures["hardware"]["matmul_peak_gflops"]["bfloat16"]
    assert peak > 0
    runs = {run["label"]: run for run in figures["runs"]}
    assert list(runs) == ["today", "fast", "fast + LoRA dropout 0"]
    assert runs["today"]["lora_dropout"] == 0.05 and runs["fast + LoRA dropout 0"]["lora_dropout"] == 0.0
    assert runs["fast"]["lora_dropout"] == LoraOptions().dropout
    assert runs["today"]["setup"]["optimizer"] == "adamw_torch" and runs["fast"]["setup"]["optimizer"] == "adamw_torch_fused"
    for run in runs.values():
        assert run["steps"] == 1 and run["examples"] == 8  # one batch of the quick profile's 8
        assert 0 < run["computed_tokens"] < run["tokens"]  # the shared prompt prefix runs once per row
        assert run["train_seconds"] > 0 and run["tokens_per_second"] > 0 and run["tokens_per_cpu_second"] > 0
        assert run["gflops"] > 0 and math.isclose(run["fraction_of_bf16_peak"], run["gflops"] / peak, rel_tol=0.05, abs_tol=1e-3)
        assert 0 < run["validation_loss"] < 20  # nats per answer token: a trained model, not garbage
        assert run["tokens_per_second_runs"] == [run["tokens_per_second"]]
    assert runs["today"]["speed_up_vs_today"] == 1.0 and runs["today"]["validation_loss_change_vs_today"] == 0.0
    # every set-up saw the same examples: same tokens, and losses within a few percent of today's
    assert len({run["tokens"] for run in runs.values()}) == 1
    assert all(abs(run["validation_loss_change_vs_today"]) < 0.1 for run in runs.values())
    validation = figures["validation_pass"]
    assert validation["packed_rows_seconds"] > 0 and validation["scoring_engine_seconds"] > 0
    assert math.isclose(validation["packed_rows_loss"], validation["scoring_engine_loss"], rel_tol=0.05)


@pytest.mark.integration
@pytest.mark.real_data
def test_zero_shot_vs_pipeline_small_mode_scores_with_every_engine_set_up(shared_data_dir, tmp_path):
    figures = run_small("zero_shot_vs_pipeline", shared_data_dir, tmp_path / "scoring.json")

    methods = ["today's engine", "engine", "engine, batch 4", "engine, fp32"]
    rows = figures["rows"]
    assert [(row["setting"], row["method"]) for row in rows] == [(s, m) for s in ("zero-shot", "few-shot") for m in methods]
    for row in rows:
        assert len(row["seconds"]) == 1 and row["examples_per_second"] > 0 and row["speed_up"] > 0
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["same_labels"] <= 1
        assert row["dtype"] in ("bfloat16", "float32") and row["gflops"] > 0 and row["fraction_of_peak"] > 0
        assert row["accuracy"] * 6 == pytest.approx(round(row["accuracy"] * 6))  # over the 6 test texts
    by_method = {(row["setting"], row["method"]): row for row in rows}
    for setting in ("zero-shot", "few-shot"):
        assert by_method[setting, "today's engine"]["speed_up"] == 1.0
        assert by_method[setting, "today's engine"]["same_labels"] == 1.0
        assert by_method[setting, "engine"]["same_labels"] == 1.0  # the same arguments (the quick profile's batch of 8)
        assert by_method[setting, "engine, fp32"]["dtype"] == "float32"
    # two demonstrations make every few-shot prompt longer: more tokens through the model
    assert by_method["few-shot", "engine"]["tokens"] > by_method["zero-shot", "engine"]["tokens"]


def test_executors_side_by_side_small_mode_agrees_between_local_and_ray(toy_data_dir, tmp_path):
    pytest.importorskip("ray")
    figures = run_small("executors_side_by_side", toy_data_dir, tmp_path / "executors.json")

    assert figures["options"]["strategies"] == "tfidf-linear" and figures["options"]["profile"] == "smoke"
    assert figures["workers"] == 2 and figures["threads_per_trial"] == 1
    assert set(figures["trials"]) == {"trials/tfidf-linear.seed0.json", "trials/tfidf-linear.seed1.json"}
    for accuracies in figures["trials"].values():
        assert accuracies["local"] is not None and 0 < accuracies["local"] <= 1
        assert accuracies["ray"] == accuracies["local"]  # a deterministic strategy: exactly the same
    assert figures["local_seconds"] > 0 and figures["ray_seconds"] >= figures["ray_start_seconds"] >= 0
    assert figures["speedup"] == pytest.approx(figures["local_seconds"] / figures["ray_seconds"], abs=0.02)


def test_sweep_cost_small_mode_estimates_from_a_measured_run(toy_data_dir, tmp_path):
    sweep = ["--seeds", "2", "--train-sizes", "8,16", "--workers", "1,2,4"]
    figures = run_small("sweep_cost", toy_data_dir, tmp_path / "sweep.json", *sweep)

    (task,) = figures["tasks"]
    assert list(task["strategy_seconds"]) == ["tfidf-linear"] and task["strategy_seconds"]["tfidf-linear"] > 0
    assert figures["trials"] == 2 * (1 + 2)  # seeds x (whole split + train sizes) x one strategy
    clusters = {row["workers"]: row for row in figures["clusters"]}
    assert list(clusters) == [1, 2, 4]
    assert clusters[1]["wall_hours"] == pytest.approx(figures["trial_hours"])  # one worker runs every trial
    longest = clusters[1]["longest_trial_minutes"] / 60
    for workers, row in clusters.items():
        assert max(figures["trial_hours"] / workers, longest) <= row["wall_hours"] + 1e-9
        assert row["wall_hours"] <= figures["trial_hours"] + 1e-9


def test_decision_time_small_mode_times_both_sides_and_compares_their_recommendations(toy_data_dir, tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCHMARKS.parent, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("decision_time snapshots commits: this checkout is not a git repository")
    figures = run_small("decision_time", toy_data_dir, tmp_path / "decision.json", timeout=600)

    for label in ("baseline", "candidate"):
        side = figures[label]
        assert side["exit_code"] == 0, side.get("stderr_tail")
        assert side["recommendation"] == "tfidf-linear" and side["wall_seconds"] > 0
        assert list(side["trials"]) == ["tfidf-linear.seed0"] and side["trials"]["tfidf-linear.seed0"]["status"] == "ok"
        totals = side["totals"]
        assert totals["outside_trials_seconds"] > 0 and totals["train_seconds"] >= 0
    assert (
        figures["baseline"]["commit"]
        == subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCHMARKS.parent, capture_output=True, text=True).stdout.strip()
    )
    assert figures["candidate"]["commit"].endswith("+ working tree")
    assert figures["wall_time_ratio"] == round(figures["candidate"]["wall_seconds"] / figures["baseline"]["wall_seconds"], 3)
    assert figures["same_recommendation"] is True
