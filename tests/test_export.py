"""``slmbench export``: every built-in strategy's export, read back in a fresh process, predicts exactly as
its trial did (through slmbench and through each form's own library); the model card's lines run as
printed; quantized forms reproduce the deployment check; the run's export check in the report; bad calls."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import check, run_cli, snapshot
from conftest import BUILT_IN_STRATEGIES, run_toy_task

from slmbench.cli.main import main
from slmbench.records import EXPORT_CHECKS, read_export_checks, read_export_manifest, read_trial, trial_file
from slmbench.testing.toys import toy_task_files

PROBABILITY_TOLERANCE = 6e-6
"""Recorded probabilities are rounded to 5 places."""
FORM_TOLERANCE = 1e-4
"""A plain library's probabilities against the trial's: the same weights, other batches (padding) or
another runtime (onnxruntime), so float noise only; the labels must be identical."""
QUANTIZED_AGREEMENT = 0.6
"""Quantized forms on the toy task's 15 test texts: the tiny random models' margins are small against
4-bit and 8-bit rounding, so a few labels may flip; their accuracy must equal the deployment check's."""


@pytest.fixture(scope="module")
def exports(all_strategies_run, tmp_path_factory) -> dict[str, Path]:
    """Every built-in strategy's trial exported (in this process)."""
    folder = tmp_path_factory.mktemp("exports")
    for name in BUILT_IN_STRATEGIES:
        assert main(["export", str(all_strategies_run), "--strategy", name, "--to", str(folder / name)]) == 0, name
    return {name: folder / name for name in BUILT_IN_STRATEGIES}


@pytest.fixture(scope="module")
def test_csv(all_strategies_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "test.csv"
    texts = json.loads((all_strategies_run / "test_texts.json").read_text(encoding="utf-8"))
    path.write_text("text\n" + "".join(json.dumps(text) + "\n" for text in texts), encoding="utf-8")
    return path


def _recorded(run_dir: Path, name: str):
    record = read_trial(trial_file(run_dir, f"{name}.seed0"))
    assert record.ok, name
    return record


FRESH_PROCESS = """
import json, sys
from pathlib import Path
from slmbench.cli.main import main
from slmbench.engine.exporting import open_export
from slmbench.engine.model_cache import ModelCache
from slmbench.engine.reuse import check_trial, load_trial
from slmbench.strategy.registry import load_registry

exports, test_csv, texts, out = json.loads(sys.argv[1])
registry = load_registry()
results = {}
for name, directory in exports.items():
    code = main(["predict", directory, test_csv, "--output", str(Path(out) / f"{name}.jsonl"), "--no-progress"])
    assert code == 0, name
    manifest, saved = open_export(Path(directory))
    strategy = load_trial(check_trial(saved, registry.strategy), registry.strategy, ModelCache(None))
    for form in manifest.forms[1:]:
        predictions = strategy.form_predictor(form, Path(directory))(texts)
        results[f"{name}/{form.path}"] = [list(map(int, predictions.labels)), [list(map(float, row)) for row in predictions.probabilities]]
print(json.dumps(results))
"""


def test_every_export_predicts_exactly_as_its_trial_in_a_fresh_process(all_strategies_run, exports, test_csv, tmp_path):
    texts = json.loads((all_strategies_run / "test_texts.json").read_text(encoding="utf-8"))
    arguments = json.dumps([{name: str(path) for name, path in exports.items()}, str(test_csv), texts, str(tmp_path)])
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, arguments], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    by_form = json.loads(done.stdout.splitlines()[-1])

    for name in BUILT_IN_STRATEGIES:
        record = _recorded(all_strategies_run, name)
        rows = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [row["label"] for row in rows] == [record.labels[i] for i in record.predictions.predicted], name
        for row, recorded in zip(rows, record.predictions.probabilities):
            assert max(abs(p - r) for p, r in zip(row["probabilities"].values(), recorded)) <= PROBABILITY_TOLERANCE, name
    expected_forms = {
        "tfidf-linear/pipeline.skops",
        "embedding-classifier/sentence-transformers",
        "encoder-finetune/model",
        "encoder-finetune/onnx",
        *(f"{name}/model" for name in ("lora", "dora", "qlora", "prompt-tuning", "full-finetune")),
    }
    assert set(by_form) == expected_forms
    for key, (labels, probabilities) in by_form.items():
        record = _recorded(all_strategies_run, key.split("/")[0])
        assert labels == record.predictions.predicted, key
        for row, recorded in zip(probabilities, record.predictions.probabilities):
            assert max(abs(p - r) for p, r in zip(row, recorded)) <= FORM_TOLERANCE, key


def test_each_export_holds_its_manifest_card_and_forms(exports):
    for name, directory in exports.items():
        manifest = read_export_manifest(directory)
        assert manifest.strategy == name and manifest.forms[0].kind == "slmbench", name
        assert all((directory / form.path).exists() for form in manifest.forms), name
        card = (directory / "README.md").read_text(encoding="utf-8")
        assert card.startswith("---\n") and "pipeline_tag: text-classification" in card, name
        assert "## Results" in card and "95% CI" in card and "## Data" in card and "## Intended use and limits" in card, name
        assert str(directory.parent) not in card, name  # no machine path
    assert "Only slmbench loads this export" in (exports["adapters"] / "README.md").read_text(encoding="utf-8")
    assert "Only slmbench loads this export" in (exports["ensemble"] / "README.md").read_text(encoding="utf-8")
    for name in ("few-shot", "rag", "knn-vote", "tfidf-linear", "ensemble"):
        assert "this export contains training data" in (exports[name] / "README.md").read_text(encoding="utf-8"), name
    for name in ("zero-shot", "lora", "encoder-finetune"):
        assert "training data" not in (exports[name] / "README.md").read_text(encoding="utf-8"), name
    merged = exports["lora"]
    assert (merged / "adapter" / "adapter_model.safetensors").is_file()  # the adapter beside the merged model
    assert read_export_manifest(exports["qlora"]).forms[1].quantization == "nf4"  # its 4-bit base, as measured


@pytest.mark.parametrize("name", ["tfidf-linear", "embedding-classifier", "encoder-finetune"])
def test_the_cards_plain_library_lines_run_and_give_the_trials_predictions(all_strategies_run, exports, name):
    record = _recorded(all_strategies_run, name)
    texts = json.loads((all_strategies_run / "test_texts.json").read_text(encoding="utf-8"))
    card = (exports[name] / "README.md").read_text(encoding="utf-8")
    snippets = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    assert snippets, name
    for snippet in snippets:
        assert "slmbench" not in snippet
        first, rest = snippet.split("\n", 1)
        assert first.startswith("texts = [")
        code = f"texts = {json.dumps(texts)}\n{rest}"
        done = subprocess.run([sys.executable, "-c", code], cwd=exports[name], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        printed = ast.literal_eval(done.stdout.strip().splitlines()[-1])
        assert printed == [record.labels[i] for i in record.predictions.predicted], snippet


@pytest.mark.parametrize(("name", "quantize"), [("lora", "int8"), ("lora", "nf4"), ("qlora", "nf4"), ("encoder-finetune", "int8")])
def test_a_quantized_export_ships_what_the_deployment_check_measured(all_strategies_run, tmp_path, name, quantize):
    from slmbench.engine.export_check import score_export
    from slmbench.strategy.registry import load_registry

    target = tmp_path / "export"
    assert main(["export", str(all_strategies_run), "--strategy", name, "--quantize", quantize, "--to", str(target)]) == 0
    texts = json.loads((all_strategies_run / "test_texts.json").read_text(encoding="utf-8"))
    parity = score_export(target, load_registry().strategy, texts, requests=2)
    slmbench_form, quantized = parity.forms
    assert slmbench_form.agreement == 1.0  # the trial itself ships too, unquantized
    assert quantized.quantization == quantize and quantized.error is None
    assert quantized.agreement >= QUANTIZED_AGREEMENT
    measured = next(check for check in _recorded(all_strategies_run, name).deployment if check.quantization == quantize)
    assert quantized.accuracy == pytest.approx(measured.accuracy, abs=1e-5)
    assert "safetensors" in " ".join(path.name for path in (target / "model").iterdir())
    assert not [path for path in target.rglob("*") if path.suffix in (".bin", ".pt", ".pkl")]  # no pickle


def test_the_run_checks_its_recommended_export_and_the_report_shows_each_form(all_strategies_run, tmp_path):
    checks = read_export_checks(all_strategies_run)
    assert checks is not None and checks.checked == "recommended" and len(checks.trials) == 1
    (trial,) = checks.trials
    assert trial.error is None and trial.forms and all(form.agreement == 1.0 for form in trial.forms)
    assert all(form.size_bytes and form.single_request for form in trial.forms)
    report = (all_strategies_run / "report.md").read_text(encoding="utf-8")
    assert "### Exported forms" in report and "Every unquantized form agrees with the trial" in report

    run_dir = run_toy_task(tmp_path, "all-checked", "tfidf-linear,encoder-finetune", "--export-check", "all")
    checks = read_export_checks(run_dir)
    assert checks.checked == "all" and sorted(trial.name for trial in checks.trials) == ["encoder-finetune", "tfidf-linear"]
    rows = [line for line in (run_dir / "report.md").read_text(encoding="utf-8").splitlines() if "(seed 0) |" in line]
    assert len(rows) == 5  # tfidf: slmbench, skops; encoder: slmbench, transformers, ONNX

    run_dir = run_toy_task(tmp_path, "unchecked", "tfidf-linear", "--export-check", "none")
    assert not (run_dir / EXPORT_CHECKS).exists() and "### Exported forms" not in (run_dir / "report.md").read_text(encoding="utf-8")


# --- bad input: one clear line, exit 2, nothing written outside --to ----------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A working folder with a run of tfidf-linear, majority (saves nothing) and exploding (fails)."""
    site = tmp_path_factory.mktemp("export-site")
    task = toy_task_files(site / "task")
    argv = ["run", "--task", str(task), "--strategies", "tfidf-linear,majority,exploding", "--profile", "smoke"]
    argv += ["--output", str(site / "runs"), "--run-id", "mixed", "--no-progress"]
    result = run_cli(argv, cwd=site, kind="cli argument", invalid=None, writes=site / "runs")
    assert result.code in (0, 1), str(result)
    (site / "full").mkdir()
    (site / "full" / "keep.txt").write_text("mine", encoding="utf-8")
    (site / "empty").mkdir()
    (site / "a-file").write_text("mine", encoding="utf-8")
    return site


MIXED = "runs/toy-sentiment/mixed"
BAD_CALLS = {
    "a folder that is not empty": (["export", MIXED, "--to", "full"], "not empty"),
    "a file as --to": (["export", MIXED, "--to", "a-file"], "not a folder"),
    "no --to": (["export", MIXED], "--to"),
    "--to inside the run folder": (["export", MIXED, "--to", f"{MIXED}/shipped"], "inside the run folder"),
    "--to in a missing folder": (["export", MIXED, "--to", "none/out"], "parent folder none does not exist"),
    "no such trial": (["export", MIXED, "--strategy", "lora", "--to", "out"], "no trial of 'lora'"),
    "no such seed": (["export", MIXED, "--strategy", "tfidf-linear", "--seed", "3", "--to", "out"], "seed 3"),
    "failed trial": (["export", MIXED, "--strategy", "exploding", "--to", "out"], "ended failed"),
    "strategy without save and load": (["export", MIXED, "--strategy", "majority", "--to", "out"], "cannot be reused"),
    "nothing to quantize": (["export", MIXED, "--strategy", "tfidf-linear", "--quantize", "int8", "--to", "out"], "--quantize int8"),
    "unknown quantization": (["export", MIXED, "--strategy", "tfidf-linear", "--quantize", "fp4", "--to", "out"], "--quantize"),
    "no such run folder": (["export", "runs/none", "--to", "out"], "no such folder"),
    "not a run folder": (["export", "full", "--to", "out"], "not a slmbench run folder"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_export_calls_are_one_clear_line_and_write_nothing(site, case):
    argv, culprit = BAD_CALLS[case]
    result = run_cli(argv, cwd=site, kind="cli argument", invalid=True)
    check(result, culprit, accept=False)
    assert result.code == 2
    assert not (site / "out").exists() and not (site / MIXED / "shipped").exists() and not (site / "none").exists()
    assert (site / "full" / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_a_failed_export_into_an_empty_folder_leaves_it_empty(all_strategies_run, tmp_path):
    (tmp_path / "empty").mkdir()
    argv = ["export", str(all_strategies_run), "--strategy", "qlora", "--quantize", "int8", "--to", "empty"]
    result = run_cli(argv, cwd=tmp_path, kind="cli argument", invalid=True, writes=tmp_path / "empty")
    check(result, "trained on a nf4 base", accept=False)  # found once its 4-bit base is loaded, after files were written
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())
    result = run_cli([*argv[:-1], "new"], cwd=tmp_path, kind="cli argument", invalid=True, writes=tmp_path / "new")
    check(result, "trained on a nf4 base", accept=False)
    assert not (tmp_path / "new").exists()


def test_an_export_writes_only_inside_to_and_predict_reads_it(site, tmp_path):
    work = Path(shutil.copytree(site, tmp_path / "site"))
    before = snapshot(work / "runs")
    (work / "shipped").mkdir()
    result = run_cli(["export", MIXED, "--to", "shipped/model"], cwd=work, kind="cli argument", invalid=False, writes=work / "shipped")
    assert result.outcome == "accepted", str(result)
    assert snapshot(work / "runs") == before  # the run folder is read, never written
    (work / "texts.csv").write_text("text\nProfit rose\nLoss widened\n", encoding="utf-8")
    result = run_cli(
        ["predict", "shipped/model", "texts.csv", "--output", "out.jsonl"],
        cwd=work,
        kind="cli argument",
        invalid=False,
        writes=work / "out.jsonl",
    )
    assert result.outcome == "accepted", str(result)
    assert len((work / "out.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    result = run_cli(["predict", "shipped/model", "texts.csv", "--strategy", "knn-vote"], cwd=work, kind="cli argument", invalid=True)
    check(result, "holds tfidf-linear seed 0 only", accept=False)


@pytest.mark.parametrize("damage", ["manifest deleted trial", "manifest garbage", "artifact emptied", "trial outside", "remote code"])
def test_a_damaged_export_is_one_clear_line(site, tmp_path, damage):
    work = Path(shutil.copytree(site, tmp_path / "site"))
    result = run_cli(["export", MIXED, "--to", "shipped"], cwd=work, kind="cli argument", invalid=False, writes=work / "shipped")
    assert result.outcome == "accepted", str(result)
    shipped = work / "shipped"
    if damage == "manifest deleted trial":
        (shipped / "slmbench" / "trials" / "tfidf-linear.seed0.json").unlink()
    elif damage == "manifest garbage":
        (shipped / "slmbench-export.json").write_bytes(b"{\x00 not json")
    elif damage == "artifact emptied":
        (shipped / "slmbench" / "artifacts" / "tfidf-linear.seed0" / "pipeline.skops").write_bytes(b"")
    elif damage == "trial outside":
        manifest = json.loads((shipped / "slmbench-export.json").read_text(encoding="utf-8"))
        (work / "runs" / "evil.json").write_text("{}", encoding="utf-8")
        manifest["trial"] = "../../runs/evil"
        (shipped / "slmbench-export.json").write_text(json.dumps(manifest), encoding="utf-8")
    else:
        path = shipped / "slmbench" / "trials" / "tfidf-linear.seed0.json"
        record = json.loads(path.read_text(encoding="utf-8"))
        record["models"]["trust_remote_code"] = True
        path.write_text(json.dumps(record), encoding="utf-8")
    (work / "texts.csv").write_text("text\nProfit rose\n", encoding="utf-8")
    result = run_cli(["predict", "shipped", "texts.csv"], cwd=work, kind="export folder", invalid=True)
    check(result, "shipped", accept=False)


# --- licences in the model card --------------------------------------------------------------------


def test_a_models_licence_comes_from_the_registry_its_card_or_its_family(tmp_path):
    from slmbench.engine.model_card import GEMMA_TERMS, _base_model_section
    from slmbench.lm.models import EMBEDDED_CAUSAL_LM, model_license

    assert model_license(EMBEDDED_CAUSAL_LM) == "apache-2.0"
    carded = tmp_path / "carded"
    carded.mkdir()
    (carded / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    (carded / "README.md").write_text("---\nlicense: mit\n---\n# a model\n", encoding="utf-8")
    assert model_license(str(carded)) == "mit"
    gemma = tmp_path / "gemma"
    gemma.mkdir()
    (gemma / "config.json").write_text('{"model_type": "gemma3_text"}', encoding="utf-8")
    (gemma / "README.md").write_text("---\nlicense: apache-2.0\n---\n", encoding="utf-8")  # a folder's claim does not lift the terms
    assert model_license(str(gemma)) == "gemma"
    assert model_license(str(tmp_path / "nothing-here")) is None
    section = _base_model_section([str(gemma), "owner/unknown"], {str(gemma): "gemma", "owner/unknown": None})
    assert GEMMA_TERMS in section and "not known to slmbench" in section
    assert GEMMA_TERMS not in _base_model_section([str(carded)], {str(carded): "mit"})
