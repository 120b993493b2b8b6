"""The record schema typed to the leaves: typed records round trip, and records of every older version load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slmbench import records
from slmbench.engine.metrics import classification_metrics
from slmbench.engine.run_options import options_from_run_dir
from slmbench.lm.models import EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL
from slmbench.tasks.profiles import get_profile

RESULTS = Path(__file__).resolve().parents[1] / "results"
FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
REFERENCE_RUNS = sorted(path.parent for path in RESULTS.glob("*/*/run.json"))


def _typed_trial() -> records.TrialRecord:
    """A trial whose every typed part is set, option values of each JSON scalar type included."""
    options: dict[str, records.OptionValue] = {"k": 3, "rate": 0.5, "merge": True, "kind": "gelu", "cap": None}
    return records.TrialRecord(
        strategy="few-shot",
        status="ok",
        labels=["no", "yes"],
        config=records.TrialConfig(
            strategy="few-shot",
            task="toy",
            task_path="toy.yaml",
            profile=get_profile("quick"),
            models=records.ModelsConfig(causal_lm="lm", embedding_model="embedder"),
            options=options,
        ),
        options=options,
        metrics=records.Metrics(**classification_metrics([0, 1, 1], [0, 1, 0], ["no", "yes"])),
        predictions=records.PredictionRecord(gold=[0, 1, 1], predicted=[0, 1, 0]),
        calibration=records.Calibration(method="batch", bias=(0.123456, 0.876544), prior=(0.25, 0.75)),
        tuning=records.Tuning(
            method="optuna",
            budget=2,
            chosen={"k": 3},
            tried=[
                records.TuningTrial(options={"k": 3}, validation_accuracy=0.9),
                records.TuningTrial(options={"k": 8}, validation_accuracy=None),
            ],
        ),
        environment=records.Environment(
            python="3.11.7",
            cpu_count=2,
            hardware=records.Hardware(
                cpu_model="Test CPU",
                cpu_features=records.CpuFeatures(amx=False, avx512_bf16=True, avx512=True, torch_capability="AVX512"),
                torch_threads=1,
                matmul_peak_gflops={"float32": 109.4, "bfloat16": 452.8},
            ),
            packages={"torch": "2.13.0"},
        ),
    )


def _typed_run() -> records.RunRecord:
    """A run record whose every typed part is set."""
    return records.RunRecord(
        run_id="r1",
        task="toy",
        options=records.RunOptionsRecord(task="/abs/toy.yaml", seeds=[0, 1], options={"few-shot": {"k": [2, 4]}}, models=["lm"]),
        profile=get_profile("smoke"),
        data=records.DataProvenance(
            source="hub",
            hub=records.HubSource(path="org/data", revision="abc"),
            rows=12,
            content_sha256="c0ffee",
            texts_with_conflicting_labels=0,
        ),
        models=records.RunModels(causal_lm=["lm"], embedding_model=["embedder"], device="cpu", dtype="float32"),
        references=[records.Reference(system="s", metric="accuracy", value=0.9, source="a paper")],
        environment=records.Environment(python="3.11.7", packages={"slmbench": "0.1.0"}),
    )


def test_typed_trial_round_trips_and_rounds_the_calibration(tmp_path: Path) -> None:
    trial = _typed_trial()
    path = tmp_path / "trials" / "few-shot.seed0.json"
    records.write_trial(path, trial, tmp_path)
    read = records.read_trial(path)
    assert read.model_dump(exclude={"calibration"}) == trial.model_dump(exclude={"calibration"})
    assert read.calibration == records.Calibration(method="batch", bias=(0.1235, 0.8765), prior=(0.25, 0.75))  # 4 decimals
    assert [type(value) for value in read.options.values()] == [int, float, bool, str, type(None)]
    assert read.config is not None and read.config.profile == get_profile("quick")
    assert trial.config is not None and read.config.config_hash() == trial.config.config_hash()
    assert read.environment.hardware is not None and read.environment.hardware.cpu_features == records.CpuFeatures(
        amx=False, avx512_bf16=True, avx512=True, torch_capability="AVX512"
    )


def test_typed_run_round_trips_with_its_paths_relative(tmp_path: Path) -> None:
    run = _typed_run()
    records.write_run(tmp_path, run)
    stored = json.loads((tmp_path / "run.json").read_text())
    assert stored["schema_version"] == records.SCHEMA_VERSION == 3
    assert not Path(stored["options"]["task"]).is_absolute()
    read = records.read_run(tmp_path)
    assert read == run
    assert read.data is not None and read.data.hub == records.HubSource(path="org/data", revision="abc")


@pytest.mark.parametrize("run_dir", REFERENCE_RUNS, ids=[f"{p.parent.name}/{p.name}" for p in REFERENCE_RUNS])
def test_every_reference_run_loads_into_the_typed_records(run_dir: Path) -> None:
    """The committed reference runs (schema 2 or later, some rewritten from 1) load whole, and their config hashes hold."""
    folder = records.load_run_folder(run_dir)
    assert folder.run is not None and folder.run.profile is not None and folder.run.data is not None
    assert [trial.problem for trial in folder.trials if trial.problem] == []
    for trial in folder.trials:
        raw = json.loads((run_dir / trial.file).read_text())
        assert 2 <= raw["schema_version"] <= records.SCHEMA_VERSION
        assert trial.record is not None and trial.record.config is not None
        assert "calibration" not in trial.record.details
        if ".seed" in trial.file:  # written by today's runner (not rewritten from 0.1): the hash is stable
            assert trial.record.config.config_hash() == raw["config_hash"], trial.file


def test_a_schema_2_run_and_trial_of_today_in_the_typed_records() -> None:
    run = records.read_run(RESULTS / "bbc" / "quick")
    assert run.options is not None and (run.options.strategies.split(",")[0], run.options.seeds) == ("zero-shot", [0])
    assert run.options.models == ["smollm2-135m-instruct"] and run.options.train_sizes == []
    assert run.profile == get_profile("quick").model_copy(update={"compute_parameters": None})  # run before the compute scaling
    assert (run.data is not None) and (run.data.file, run.data.rows, run.data.source) == ("bbc_news.csv", 1490, "file")
    assert run.models == records.RunModels(
        causal_lm=["smollm2-135m-instruct"], embedding_model=["all-minilm-l6-v2"], device="cpu", dtype="float32"
    )
    hardware = run.environment.hardware
    assert hardware is not None and hardware.cpu_features is not None and hardware.cpu_features.avx512_bf16 is True
    assert hardware.matmul_peak_gflops == {"float32": 201.9, "bfloat16": 894.9}
    assert run.environment.packages["torch"] == "2.13.0+cpu" and run.environment.cpu_count == 2

    trial = records.read_trial(RESULTS / "bbc" / "quick" / "trials" / "few-shot.seed0.json")
    assert trial.calibration == records.Calibration(
        method="batch", bias=(0.1618, 0.079, 0.287, 0.2488, 0.2234), prior=(0.235, 0.182, 0.186, 0.24, 0.157)
    )
    assert trial.tuning is not None and trial.tuning.chosen == {"shots_per_class": 1}
    assert [tried.options["shots_per_class"] for tried in trial.tuning.tried] == [2, 4, 1]
    uncalibrated = records.read_trial(RESULTS / "bbc" / "quick-uncalibrated" / "trials" / "zero-shot.seed0.json")
    assert uncalibrated.calibration == records.Calibration(method="none")


def test_a_schema_2_run_rewritten_from_0_1_gets_today_s_run_options() -> None:
    """Reference folders rewritten from version 1 kept 0.1's options (one seed and model, sizes as text)."""
    run = records.read_run(RESULTS / "financial_sentiment" / "quick-seed0")
    assert run.options is not None
    assert (run.options.seeds, run.options.models, run.options.embedding_models) == ([0], [EMBEDDED_CAUSAL_LM], [EMBEDDED_EMBEDDING_MODEL])
    assert run.options.train_sizes == [16, 64, 256]  # "16,64,256,all": the whole split always runs
    assert run.environment.hardware is None and run.environment.packages["slmbench"] == "0.1.0"


def test_a_version_1_run_and_trial_load_into_the_typed_records(tmp_path: Path) -> None:
    (tmp_path / "trials").mkdir()
    profile = {k: v for k, v in get_profile("quick").model_dump().items() if k not in {"train_epochs", "tuning_trials", "latency_requests"}}
    run = {
        "schema": 1,
        "run_id": "quick-seed0",
        "task": "toy",
        "seed": 3,
        "command": "slmbench run --task toy",
        "options": {"task": "toy", "seed": 3, "model": "lm", "embedding_model": "emb", "train_sizes": None},
        "profile": profile,
        "data": {"source": "file", "file": "/home/someone/toy.csv", "rows": 40},
        "models": {"causal_lm": "lm", "embedding_model": "emb", "device": "cpu"},
        "environment": {"python": "3.11.7", "gpu": {"name": "unknown to today"}, "packages": {"left-pad": "1.0"}},
    }
    (tmp_path / "run.json").write_text(json.dumps(run))
    read = records.read_run(tmp_path)
    assert read.schema_version == 3 and (read.seeds, read.commands) == ([3], ["slmbench run --task toy"])
    assert read.options is not None and (read.options.seeds, read.options.models, read.options.train_sizes) == ([3], ["lm"], [])
    assert read.profile is not None and read.profile.max_train_steps == 60 and read.profile.model_fields_set == set(profile)
    assert read.data == records.DataProvenance(source="file", file="toy.csv", rows=40)
    assert read.models == records.RunModels(causal_lm=["lm"], embedding_model=["emb"], device="cpu")
    assert read.environment == records.Environment(python="3.11.7", packages={"left-pad": "1.0"})  # unknown keys ignored

    trial = {
        "schema": 1,
        "strategy": "few-shot",
        "status": "ok",
        "config": {"strategy": "few-shot", "task_path": "/x/toy.yaml", "profile": profile, "models": {"causal_lm_name": "lm"}},
        "details": {"params": {"shots_per_class": 2}, "labelled_examples": 6, "demonstrations": [1, 2]},
        "environment": {"python": "3.11.7", "hardware": {"cpu_model": "Old CPU", "numa_nodes": 2}},
    }
    (tmp_path / "trials" / "few-shot.json").write_text(json.dumps(trial))
    old = records.read_trial(tmp_path / "trials" / "few-shot.json")
    assert (old.options, old.labelled_examples, old.details, old.calibration) == (
        {"shots_per_class": 2},
        6,
        {"demonstrations": [1, 2]},
        None,
    )
    assert old.config is not None and old.config.profile.name == "quick" and old.config.models.causal_lm == "lm"
    assert old.environment.hardware == records.Hardware(cpu_model="Old CPU")


def test_a_schema_2_run_with_nothing_recorded_and_a_model_named_alone(tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "run.json", tmp_path / "run.json")
    run = json.loads((tmp_path / "run.json").read_text())
    run.update(schema_version=2, options={}, data={}, models={"causal_lm": "lm", "embedding_model": ["a", "b"]})
    (tmp_path / "run.json").write_text(json.dumps(run))
    read = records.read_run(tmp_path)
    assert (read.options, read.data) == (None, None)
    assert (read.models.causal_lm, read.models.embedding_model) == (["lm"], ["a", "b"])


def test_resuming_a_run_that_recorded_no_models_runs_the_embedded_ones(tmp_path: Path) -> None:
    """``models: null`` (not recorded, as in a run of schema 2 that named none) means the defaults, not no model."""
    run_dir = Path(shutil.copytree(FIXTURE, tmp_path / "sentiment" / "run_small"))
    assert json.loads((run_dir / "run.json").read_text())["options"]["models"] is None
    options = options_from_run_dir(run_dir)
    assert (options.models, options.embedding_models) == ([EMBEDDED_CAUSAL_LM], [EMBEDDED_EMBEDDING_MODEL])
    assert (options.profile, options.run_id, options.allow_outside_data_dir) == ("quick", "run_small", False)
