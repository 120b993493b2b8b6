"""Every strategy at its best: equal option search on validation, the ensemble, floors, single-request
latency and verbalizer warnings, end to end with model-free strategies."""

from __future__ import annotations

import json
from pathlib import Path

from slmbench.common.progress import ProgressReporter
from slmbench.engine.run_options import RunOptions
from slmbench.engine.runner import run_benchmark


def _run(registry, task: Path, tmp_path, strategies: str, **extra):
    """The smoke profile on the toy task ``task`` (its data beside it), runs to ``tmp_path/runs``."""
    options = RunOptions(
        task=str(task),
        strategies=strategies,
        profile="smoke",
        data_dir=str(task.parent),
        output=str(tmp_path / "runs"),
        **extra,
    )
    return run_benchmark(options, registry, ProgressReporter(enabled=False))


def _record(run_dir: Path, key: str) -> dict:
    return json.loads((run_dir / "trials" / f"{key}.json").read_text())


def test_the_search_tries_the_defaults_first_prunes_laggards_and_keeps_the_best(registry, toy_task_file, tmp_path, fit_log):
    result = _run(registry, toy_task_file, tmp_path, "tunable", tuning_trials=6)
    record = _record(result.run_dir, "tunable.seed0")
    tuning = record["tuning"]
    tried = tuning["tried"]
    assert tuning["budget"] == 6 and len(tried) == 6 and tried[0]["options"] == {"k": 3}  # the defaults first
    assert fit_log()[0] == "tunable:3" and len(fit_log()) == 6
    for trial in tried:  # behind the median of the settings before it at a step: stopped there
        if trial["options"]["k"] < 3:  # worse than the defaults at every step
            assert trial["state"] == "pruned", trial
        assert (trial["validation_accuracy"] is None) == (trial["state"] == "pruned"), trial
    assert any(trial["state"] == "pruned" for trial in tried)
    complete = [trial for trial in tried if trial["state"] == "complete"]
    best = max(trial["validation_accuracy"] for trial in complete)
    assert tuning["chosen"]["k"] in {trial["options"]["k"] for trial in complete if trial["validation_accuracy"] == best}
    assert record["options"]["k"] == tuning["chosen"]["k"]
    assert {p.name for p in (result.run_dir / "artifacts" / "tunable.seed0").iterdir()} == {f"k{tuning['chosen']['k']}.txt"}
    assert "Equal tuning: every strategy could try up to 6 settings" in (result.run_dir / "report.md").read_text()


def test_an_option_the_user_sets_is_not_searched(registry, toy_task_file, tmp_path, fit_log):
    result = _run(registry, toy_task_file, tmp_path, "tunable", tuning_trials=6, options={"tunable": {"k": [7]}})
    record = _record(result.run_dir, "tunable.seed0")
    assert record["tuning"] is None and record["options"] == {"k": 7} and fit_log() == ["tunable:7"]


def test_the_ensemble_runs_after_its_members_and_pays_for_them(registry, toy_task_file, tmp_path, fit_log):
    result = _run(registry, toy_task_file, tmp_path, "ensemble,majority,last-label,tunable", seeds=[0, 1])
    assert sorted(key for key in result.ran if key.startswith("ensemble")) == ["ensemble.seed0", "ensemble.seed1"]
    assert result.ran.index("ensemble.seed0") > max(
        result.ran.index(f"{name}.seed{s}") for name in ("majority", "last-label") for s in (0, 1)
    )
    ensemble = _record(result.run_dir, "ensemble.seed0")
    members = {name: _record(result.run_dir, f"{name}.seed0") for name in ("last-label", "majority", "tunable")}
    assert ensemble["status"] == "ok", ensemble["error"]
    assert sorted(ensemble["details"]["members"]) == sorted(members)
    assert set(ensemble["config"]["inputs"]) == {f"{name}.seed0" for name in members}
    own = ensemble["details"]
    assert ensemble["cost"]["artifact_bytes"] >= sum(m["cost"]["artifact_bytes"] for m in members.values())
    assert ensemble["cost"]["train_seconds"] >= sum(m["cost"]["train_seconds"] for m in members.values())
    assert own["weight_share"] and abs(sum(own["weight_share"].values()) - 1) < 1e-3
    assert "Combining strategies: `ensemble`" in (result.run_dir / "report.md").read_text()

    again = _run(registry, toy_task_file, tmp_path, "ensemble,majority,last-label,tunable", seeds=[0, 1])
    assert again.ran == [] and "ensemble.seed0" in again.reused  # unchanged members: nothing reruns
    changed = _run(registry, toy_task_file, tmp_path, "ensemble,majority,last-label,tunable", seeds=[0, 1], options={"tunable": {"k": [6]}})
    assert sorted(changed.ran) == ["ensemble.seed0", "ensemble.seed1", "tunable.seed0", "tunable.seed1"]  # a member changed


def test_the_ensemble_needs_members(registry, toy_task_file, tmp_path):
    result = _run(registry, toy_task_file, tmp_path, "ensemble,majority")
    record = _record(result.run_dir, "ensemble.seed0")
    assert record["status"] == "failed" and "fewer than min_members=2" in record["error"]["message"]


def test_every_trial_records_the_floor_single_request_latency_and_validation_predictions(registry, toy_task_file, tmp_path):
    result = _run(registry, toy_task_file, tmp_path, "majority")
    record = _record(result.run_dir, "majority.seed0")
    single = record["cost"]["single_request"]
    assert single["requests"] == 3 and 0 <= single["p50_ms"] <= single["p95_ms"]
    assert len(record["validation_predictions"]["predicted"]) == record["validation_examples"]
    report = (result.run_dir / "report.md").read_text()
    assert "| single request p50 / p95 (ms) |" in report and "*floor: always neutral*" in report


def test_max_latency_limits_the_single_request_p95(tmp_path):
    from slmbench.records import Cost, Latency, Metrics, TrialRecord
    from slmbench.report.recommend import latency_ms
    from slmbench.report.summary import Entry

    trial = TrialRecord(
        strategy="x",
        status="ok",
        metrics=Metrics(accuracy=1, macro_f1=1),
        cost=Cost(latency_ms_per_example=2.0, single_request=Latency(p50_ms=5, p95_ms=9, requests=20)),
    )
    assert latency_ms(Entry("x", [trial])) == 9
    trial.cost = Cost(latency_ms_per_example=2.0)
    assert latency_ms(Entry("x", [trial])) == 2.0  # older records: the batched time per example


def test_validate_warns_about_verbalizers_the_model_does_not_say(smollm2_tokenizer, toy_task):
    from dataclasses import replace

    from slmbench.lm.prompts import verbalizer_warnings

    assert verbalizer_warnings(toy_task, smollm2_tokenizer) == []  # negative, neutral, positive: one token each
    odd = replace(toy_task, labels=(replace(toy_task.labels[0], verbalizer="pessimistically"), *toy_task.labels[1:]))
    (warning,) = verbalizer_warnings(odd, smollm2_tokenizer)
    assert warning.startswith("label 'neg': verbalizer 'pessimistically' is 3 tokens for this model")
    assert "add a description to the label" in warning
