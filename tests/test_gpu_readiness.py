"""Issue 26, the shared-model side of running on a GPU, checked on this CPU-only machine.

Real stand-ins where they exist: model loads counted in a real run, tiny models of the users'
architectures, a model folder whose config names remote code, a bf16 model on the CPU. Where only a
GPU can answer (bf16 support, device properties), the ``torch.cuda`` query is patched and the test
says so; ``benchmarks/gpu_check.py`` asks the real GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import torch

from slmbench.cli.main import main
from slmbench.records import load_run_folder
from slmbench.testing import tiny_causal_lm_folder, tiny_models, toy_task_files

OLD_PHI3_CONFIG = "from transformers import Phi3Config\n\n\nclass OldPhi3Config(Phi3Config):\n    pass\n"
OLD_PHI3_MODEL = """from transformers import Phi3ForCausalLM

from .configuration_old_phi3 import OldPhi3Config


class OldPhi3ForCausalLM(Phi3ForCausalLM):
    config_class = OldPhi3Config

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, **kwargs):
        raise TypeError("the hub's old modelling file: it knows no cache argument")
"""


def _counting(cls, method: str, counts: list[str]):
    """Patch ``cls.method`` (a classmethod loader) to append the path it loads to ``counts``."""
    original = getattr(cls, method).__func__

    def counted(klass, path, *args, **kwargs):
        counts.append(str(path))
        return original(klass, path, *args, **kwargs)

    return mock.patch.object(cls, method, classmethod(counted))


def test_each_shared_model_is_loaded_once_per_process_whatever_the_strategies_depend_on(tmp_path):
    """Defect 2: zero-shot and few-shot plan the models {LM, ""}, rag {LM, embedder}, knn-vote {"", embedder}:
    on the old code the LM was loaded twice and the embedder twice (one copy per models configuration)."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForCausalLM

    causal_lm, embedder = tiny_models()
    task = toy_task_files(tmp_path / "task")
    lm_loads: list[str] = []
    embedder_loads: list[str] = []
    original_init = SentenceTransformer.__init__

    def counted_init(self, model_name_or_path=None, *args, **kwargs):
        embedder_loads.append(str(model_name_or_path))
        original_init(self, model_name_or_path, *args, **kwargs)

    with _counting(AutoModelForCausalLM, "from_pretrained", lm_loads), mock.patch.object(SentenceTransformer, "__init__", counted_init):
        code = main(
            ["run", "--task", str(task), "--strategies", "zero-shot,few-shot,rag,knn-vote", "--profile", "smoke",
             "--model", str(causal_lm), "--embedding-model", str(embedder), "--data-dir", str(task.parent),
             "--output", str(tmp_path / "runs"), "--run-id", "once", "--no-progress",
             "--export-check", "none"]  # the export check reloads a trial from its export alone, on purpose
        )  # fmt: skip
    assert code == 0
    trials = load_run_folder(tmp_path / "runs" / "toy-sentiment" / "once").records
    assert {trial.strategy: trial.status for trial in trials} == dict.fromkeys(["zero-shot", "few-shot", "rag", "knn-vote"], "ok")
    assert lm_loads.count(str(causal_lm)) == 1
    assert embedder_loads.count(str(embedder)) == 1


def test_shared_models_are_keyed_by_name_device_and_dtype():
    """Defect 2: two configurations naming the same model on the same device and dtype share one copy;
    another dtype is another copy."""
    from slmbench.engine.model_cache import ModelCache
    from slmbench.records import ModelsConfig, TrialConfig

    causal_lm, _ = tiny_models()
    cache = ModelCache(progress=None)

    def config(embedding_model: str, dtype: str) -> TrialConfig:
        models = ModelsConfig(causal_lm=str(causal_lm), embedding_model=embedding_model, device="cpu", dtype=dtype)
        return TrialConfig(strategy="s", task="t", task_path="t.yaml", task_sha256="0", profile=_smoke(), models=models)

    first = cache.models(config("", "float32")).causal_lm()[0]
    assert cache.models(config("an-embedder", "float32")).causal_lm()[0] is first
    assert cache.models(config("", "bfloat16")).causal_lm()[0].dtype == torch.bfloat16


def _smoke():
    from slmbench.tasks.profiles import get_profile

    return get_profile("smoke")


def _old_remote_code_folder(directory: Path) -> Path:
    """A tiny Phi-3 whose config names the repository's own (old) modelling code, as Phi-3.5's hub repo does."""
    folder = tiny_causal_lm_folder(directory, "phi3")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_old_phi3.OldPhi3Config",
        "AutoModelForCausalLM": "modeling_old_phi3.OldPhi3ForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_old_phi3.py").write_text(OLD_PHI3_CONFIG)
    (folder / "modeling_old_phi3.py").write_text(OLD_PHI3_MODEL)
    return folder


def test_trust_remote_code_uses_transformers_own_phi3_over_the_repositorys_old_file(tmp_path):
    """Defect 3: with --trust-remote-code, an architecture transformers implements is loaded from
    transformers, not from the repository's file (whose forward knows no cache argument)."""
    from transformers import Phi3ForCausalLM

    from slmbench.lm.models import SharedModels
    from slmbench.lm.scoring import score_choices

    folder = _old_remote_code_folder(tmp_path / "phi3-remote")
    model, tokenizer = SharedModels(causal_lm_name=str(folder), trust_remote_code=True).causal_lm()
    assert type(model) is Phi3ForCausalLM

    conversation = [{"role": "user", "content": "The results beat expectations."}]
    assert len(score_choices(model, tokenizer, [conversation], ["good", "bad"]).labels) == 1


def test_remote_code_still_runs_for_an_architecture_transformers_does_not_know(tmp_path):
    from slmbench.lm.models import remote_code

    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "not-in-transformers", "auto_map": {}}))
    assert remote_code(str(folder), True) and not remote_code(str(folder), False)


@pytest.mark.parametrize(("bf16_native", "expected"), [(True, "bfloat16"), (False, "float16")])
def test_auto_dtype_is_chosen_where_the_trial_runs_and_emulated_bf16_does_not_count(bf16_native, expected):
    """Defect 5: ``auto`` stays ``auto`` in the plan and is resolved by the trial's own GPU; a T4 (compute
    capability 7.5) emulates bf16, so it gets float16. Patched: ``torch.cuda.is_bf16_supported``
    (only a GPU can answer); the planning half runs for real."""
    from slmbench.lm.models import SharedModels

    def supported(including_emulation: bool = True) -> bool:
        return including_emulation or bf16_native

    with mock.patch("torch.cuda.is_bf16_supported", supported):
        models = SharedModels(device="cuda:1", dtype="auto")
    assert models.dtype == expected and models.device == "cuda:1"


def test_the_plan_keeps_auto_dtype_for_the_trial_to_resolve(tmp_path, capsys):
    """Defect 5, planning half: a planned trial's config says ``auto``; the trial's record says what ran."""
    from slmbench.engine.planning import plan_run
    from slmbench.engine.run_options import RunOptions
    from slmbench.strategy.registry import load_registry

    task = toy_task_files(tmp_path / "task")
    options = RunOptions(task=str(task), strategies="knn-vote", profile="smoke", data_dir=str(task.parent), output=str(tmp_path / "runs"))
    plan = plan_run(options, load_registry())
    assert {trial.config.models.dtype for trial in plan.trials} == {"auto"}


def test_the_vocabulary_projection_of_a_bf16_model_runs_in_fp32(make_tiny_causal_lm, smollm2_tokenizer):
    """Defect 6: on a GPU the model is bf16; its logits must still come out of an fp32 projection
    (bf16 logits flip labels). bf16 on the CPU stands in for the GPU."""
    from test_scoring import CHOICES, conversations

    from slmbench.lm.scoring import score_choices

    model = make_tiny_causal_lm().to(torch.bfloat16)
    head = model.get_output_embeddings()
    seen: list[torch.dtype] = []
    hook = head.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    try:
        bf16 = score_choices(model, smollm2_tokenizer, conversations(), CHOICES, bfloat16=False)
    finally:
        hook.remove()
    assert seen and set(seen) == {torch.float32}
    assert head.weight.dtype == torch.bfloat16 and "forward" not in vars(head)  # the model is left as it was
    fp32 = score_choices(make_tiny_causal_lm(), smollm2_tokenizer, conversations(), CHOICES, bfloat16=False)
    assert sum(a == b for a, b in zip(bf16.labels, fp32.labels)) >= len(fp32.labels) - 1


class _FakeProperties:
    """What ``torch.cuda.get_device_properties`` says of an 80 GB H100 (patched: no GPU here)."""

    name = "NVIDIA H100 80GB HBM3"
    total_memory = 80 * 2**30
    major, minor = 9, 0


@pytest.mark.parametrize(("gib", "scale"), [(16, 1), (24, 2), (40, 4), (80, 8), (141, 8)])
def test_inference_batches_scale_with_the_gpus_memory_and_not_on_the_cpu(gib, scale):
    """Defect 8: batch sizes scale with the device. Patched: ``torch.cuda.get_device_properties`` and
    ``current_device`` (only a GPU can answer)."""
    from slmbench.lm.batch_sizes import inference_batch_size

    properties = type("Properties", (_FakeProperties,), {"total_memory": gib * 2**30})
    with mock.patch("torch.cuda.get_device_properties", return_value=properties), mock.patch("torch.cuda.current_device", return_value=0):
        assert inference_batch_size(16, "cuda") == 16 * scale
        assert inference_batch_size(64, "cuda:1") == 64 * scale
    assert inference_batch_size(16, "cpu") == 16


def test_the_environment_names_the_gpu_and_the_report_shows_it():
    """Defect 9: the GPU's name, memory, compute capability and CUDA version are recorded. Patched:
    ``torch.cuda.is_available``, ``get_device_properties`` and ``device_count`` (no GPU here)."""
    from slmbench.engine.environment import collect_environment

    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.get_device_properties", return_value=_FakeProperties),
        mock.patch("torch.cuda.device_count", return_value=2),
        mock.patch("torch.version.cuda", "12.4"),
    ):
        environment = collect_environment("cuda:1")
    gpu = environment.accelerator
    assert gpu is not None
    assert (gpu.name, gpu.memory_mb, gpu.compute_capability, gpu.count, gpu.cuda_version, gpu.bf16_native) == (
        "NVIDIA H100 80GB HBM3", 81920, "9.0", 2, "12.4", True
    )  # fmt: skip
    assert collect_environment("cpu").accelerator is None


def test_determinism_settings_are_applied_on_cuda_and_recorded(monkeypatch):
    """Defect 7: seeds reproduce on a GPU only with deterministic kernels. The settings are process-wide
    torch flags, so they are set here for a "cuda" device without touching a GPU, and restored."""
    from slmbench.lm.determinism import apply_determinism

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        on_cpu = apply_determinism("cpu")
        assert not on_cpu.deterministic_algorithms and on_cpu.cublas_workspace_config is None
        on_gpu = apply_determinism("cuda")
        assert on_gpu.deterministic_algorithms and on_gpu.cudnn_deterministic and not on_gpu.cudnn_benchmark
        assert on_gpu.cublas_workspace_config == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]


def test_peak_memory_reads_the_gpu_of_the_trial_and_the_host_apart():
    """Defect 7: on CUDA the peak is the trial's own GPU's reserved memory, and host memory is measured
    beside it. Patched: the ``torch.cuda`` memory counters (no GPU here); the host sampling is real."""
    from slmbench.lm.memory import PeakMemory

    asked: list[str] = []

    def counter(gib: int):
        def read(device):
            asked.append(str(device))
            return gib * 2**30

        return read

    with (
        mock.patch("torch.cuda.reset_peak_memory_stats", counter(0)),
        mock.patch("torch.cuda.memory_reserved", counter(1)),
        mock.patch("torch.cuda.max_memory_reserved", counter(3)),
        PeakMemory("cuda:1", interval_seconds=0.01) as memory,
    ):
        block = bytearray(64 * 2**20)  # 64 MiB of host memory, touched
        block[::4096] = b"x" * len(block[::4096])
    assert set(asked) == {"cuda:1"}
    assert memory.accelerator_added_bytes == 2 * 2**30 and memory.peak_added_bytes == 2 * 2**30
    assert memory.host_added_bytes >= 48 * 2**20
    with PeakMemory("cpu") as on_cpu:
        pass
    assert on_cpu.accelerator_added_bytes is None and on_cpu.peak_added_bytes == on_cpu.host_added_bytes


def test_every_trial_frees_accelerator_memory_and_records_host_and_device_peaks(tmp_path, monkeypatch):
    """Defect 2: accelerator memory is freed after every trial, not only after an out-of-memory error
    (counted here; on the GPU ``torch.cuda.empty_cache`` runs in it)."""
    import slmbench.engine.trial as trial_module

    freed: list[int] = []
    monkeypatch.setattr(trial_module, "free_accelerator_memory", lambda: freed.append(1))
    task = toy_task_files(tmp_path / "task")
    code = main(
        ["run", "--task", str(task), "--strategies", "knn-vote,tfidf-linear", "--profile", "smoke", "--embedding-model",
         str(tiny_models()[1]), "--data-dir", str(task.parent), "--output", str(tmp_path / "runs"), "--run-id", "free", "--no-progress"]
    )  # fmt: skip
    assert code == 0 and len(freed) == 2
    for record in load_run_folder(tmp_path / "runs" / "toy-sentiment" / "free").records:
        assert record.cost.peak_accelerator_memory_mb is None  # a CPU run
        assert record.cost.peak_host_memory_mb == record.cost.peak_memory_mb
        assert record.environment.determinism is not None and record.models is not None and record.models.dtype == "float32"


def test_the_shared_lm_is_loaded_straight_onto_its_device(monkeypatch):
    """Defect 8: the shared LM is loaded onto the run's device by ``from_pretrained`` itself (device_map),
    not loaded on the CPU and then moved. The device here is the CPU; the keyword is what matters."""
    from transformers import AutoModelForCausalLM

    from slmbench.lm.models import SharedModels

    seen: list[dict] = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def recording(cls, path, *args, **kwargs):
        seen.append(kwargs)
        return original(cls, path, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(recording))
    SharedModels(causal_lm_name=str(tiny_models()[0])).causal_lm()
    assert seen and seen[0]["device_map"] == "cpu"


def test_on_a_gpu_the_embedder_runs_in_the_runs_16_bit_dtype_with_tf32(monkeypatch):
    """Defect 8: the embedder was fp32 without TF32 on a GPU. Patched: ``SentenceTransformer`` (it would
    move to a GPU there is not), ``is_bf16_supported``, the free-memory check and the TF32 setter."""
    import sentence_transformers

    from slmbench.lm.models import SharedModels

    embedder = str(tiny_models()[1])  # built before SentenceTransformer is patched
    built: list[dict] = []
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", lambda path, **kwargs: built.append(kwargs) or torch.nn.Linear(1, 1))
    precision = torch.get_float32_matmul_precision()
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda value: built.append({"precision": value}))
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr("slmbench.lm.models.check_fits_in_memory", lambda *args: None)  # asks the GPU's free memory
    SharedModels(embedding_model_name=embedder, device="cuda", dtype="auto").embedder()
    assert built[0] == {"precision": "high"}  # TF32
    assert built[1]["model_kwargs"] == {"dtype": torch.bfloat16} and built[1]["device"] == "cuda"
    assert torch.get_float32_matmul_precision() == precision


def test_the_cpu_matmul_peak_is_measured_where_the_run_is_planned_not_in_every_trial_process(tmp_path):
    """Defect 8: a worker process spent two seconds measuring the CPU's matmul peak for its trials' records."""
    task = toy_task_files(tmp_path / "task")
    code = main(
        ["run", "--task", str(task), "--strategies", "tfidf-linear", "--profile", "smoke", "--data-dir", str(task.parent),
         "--output", str(tmp_path / "runs"), "--run-id", "peaks", "--no-progress"]
    )  # fmt: skip
    folder = load_run_folder(tmp_path / "runs" / "toy-sentiment" / "peaks")
    assert code == 0 and folder.run is not None and folder.run.environment.hardware is not None
    assert set(folder.run.environment.hardware.matmul_peak_gflops) == {"float32", "bfloat16"}
    (record,) = folder.records
    assert record.environment.hardware is not None and record.environment.hardware.matmul_peak_gflops == {}
