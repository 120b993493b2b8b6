"""benchmarks/gpu_check.py, every step on the CPU (the CUDA-only parts skipped), so the GPU check cannot rot
between the rare runs on a GPU: the exit at once without CUDA, the dependency check and its wheel list,
the lock, the 4-bit layer, the models, scoring agreement, the smoke runs (Ray included), the memory rows,
the table and the exit status."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import gpu_check
from slmbench.records import Cost, MemoryEstimate, TrialRecord

SCRIPT = Path(gpu_check.__file__)


def run_check(*arguments: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """``gpu_check.py --on-cpu --models tiny ARGUMENTS``: the process and its rows by name (``--json``)."""
    out = Path(arguments[arguments.index("--out") + 1])
    json_path = out.parent / f"{out.name}.json"
    command = [sys.executable, str(SCRIPT), "--on-cpu", "--models", "tiny", "--json", str(json_path), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=SCRIPT.parents[1])
    assert json_path.exists(), f"no rows written:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    figures = json.loads(json_path.read_text())
    assert figures["exit_status"] == result.returncode
    return result, {row["name"]: row for row in figures["rows"]}


def test_without_cuda_the_script_says_so_at_once_and_exits_2():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    started = time.perf_counter()
    result = subprocess.run(["bash", str(SCRIPT.with_suffix(".sh"))], capture_output=True, text=True, timeout=60)
    assert result.returncode == gpu_check.EXIT_NO_CUDA == 2
    assert result.stdout.startswith("no CUDA device"), result.stdout + result.stderr
    assert time.perf_counter() - started < 10


def test_on_cpu_every_step_runs_and_the_cuda_only_rows_are_skipped(tmp_path):
    result, rows = run_check("--strategies", "zero-shot", "--ray-strategies", "zero-shot", "--out", str(tmp_path / "check"))

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    status = {name: row["status"] for name, row in rows.items()}
    assert status["dependencies"] == "pass"
    assert status["cuda"] == "skip"
    assert rows["bitsandbytes 4-bit"] == {
        "name": "bitsandbytes 4-bit",
        "status": "skip",
        "detail": "skipped on CPU: the 4-bit layer is checked on CUDA only",
    }
    for architecture in gpu_check.ARCHITECTURES:
        assert status[f"model[{architecture}]"] == "pass"
        # on the CPU the reference and the device run alike (fp32), and batching changes no label
        assert rows[f"scoring[{architecture}] cpu float32 vs cpu float32"]["detail"].startswith("100.0% of 60 labels agree")
        assert rows[f"scoring[{architecture}] batch 16 vs batch 1"]["detail"].startswith("100.0% of 60 labels agree")
        assert status[f"smoke[{architecture}]"] == status[f"smoke[{architecture}] zero-shot"] == "pass"
        assert rows[f"memory[{architecture}] zero-shot"]["detail"] == "skipped on CPU: peak GPU memory is measured on CUDA only"
    assert status["ray[llama]"] == status["ray[llama] zero-shot"] == "pass"
    assert status["gpu memory rose"] == "skip"
    assert "all" in result.stdout and "rows passed or were skipped" in result.stdout


def test_a_failing_row_fails_the_check(tmp_path):
    result, rows = run_check(
        "--architectures",
        "llama",
        "--strategies",
        "zero-shot,no-such-strategy",
        "--ray-strategies",
        "none",
        "--out",
        str(tmp_path / "check"),
    )

    assert result.returncode == gpu_check.EXIT_FAILED == 1
    assert rows["smoke[llama]"]["status"] == "fail" and "no-such-strategy" in rows["smoke[llama]"]["detail"]
    assert rows["ray"]["status"] == "skip"
    assert "1 of" in result.stdout and "rows failed" in result.stdout


def test_missing_dependencies_are_listed_pinned_with_how_to_carry_them(tmp_path, monkeypatch, capsys):
    lock = tmp_path / "lock.txt"
    lock.write_text("# comment\nno-such-distribution==1.2.3  # >=1\npluggy==1.5.0  # >=1.5\n", encoding="utf-8")
    monkeypatch.setattr(gpu_check, "LOCK", lock)

    status = gpu_check.main(["--models", "tiny", "--out", str(tmp_path / "out")])

    assert status == gpu_check.EXIT_MISSING == 3
    printed = capsys.readouterr().out
    assert "  no-such-distribution==1.2.3\n" in printed and "pluggy==" not in printed  # pluggy is installed, at a version >=1.5
    assert (tmp_path / "out" / "wheels-needed.txt").read_text() == "no-such-distribution==1.2.3\n"
    assert "pip download --no-deps --only-binary=:all: --python-version" in printed
    assert "pip install --no-index --no-deps --find-links wheels -r wheels-needed.txt" in printed
    assert "dependencies  FAIL    1 of the 2 wheels in lock.txt missing" in printed


def test_a_distribution_installed_at_a_version_a_dependent_refuses_must_travel_too():
    pins = gpu_check.read_lock("transformers==5.25.0  # <6.0.0,>=5.24\nnumpy==2.4.6  # <2.7\nsix==1.17.0\n")
    versions = {"transformers": "5.17.0", "numpy": "2.5.2"}

    missing = gpu_check.missing_pins(pins, versions.get)

    assert [pin.name for pin in missing] == ["transformers", "six"]  # too old, not installed; numpy's 2.5.2 will do


def test_the_lock_pins_every_dependency_of_pyproject_at_a_version_it_accepts():
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {pin.name: pin for pin in gpu_check.read_lock(gpu_check.LOCK.read_text(encoding="utf-8"))}
    pyproject = tomllib.loads((SCRIPT.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    for text in pyproject["project"]["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)  # as the lock writes it: adjustText is pinned as adjusttext
        if name == "torch":  # the GPU machine brings its CUDA build
            assert "torch" not in pins
            continue
        assert name in pins, f"{requirement.name} is not in {gpu_check.LOCK.name}: rerun gpu_check.py --write-lock"
        assert requirement.specifier.contains(pins[name].version)


def test_write_lock_pins_this_environment():
    import importlib.metadata

    pins = gpu_check.read_lock(gpu_check.write_lock())

    by_name = {pin.name: pin for pin in pins}
    assert by_name["transformers"].version == importlib.metadata.version("transformers")
    assert ">=5.24" in by_name["transformers"].accepts
    assert "huggingface-hub" in by_name and "setuptools" in by_name  # a dependency's dependency; the build backend
    assert "torch" not in by_name


def test_the_4bit_layer_computes_on_the_cpu_what_the_gpu_row_checks():
    # The row itself runs on CUDA only; the same function on the CPU keeps its bitsandbytes calls working.
    assert gpu_check.check_bitsandbytes(on_cuda=False).status == "skip"
    assert 0 < gpu_check.nf4_error("cpu") <= gpu_check.NF4_TOLERANCE


def trial(peak: float | None, estimate: float | None = None, total: float | None = None) -> TrialRecord:
    memory = MemoryEstimate(device="cuda", total_mb=total) if total is not None else None
    cost = Cost(peak_accelerator_memory_mb=peak, estimated_memory_mb=estimate)
    return TrialRecord(strategy="lora", status="ok", cost=cost, memory_estimate=memory)


@pytest.mark.parametrize(
    ("record", "status", "detail"),
    [
        (trial(peak=300, estimate=250), "pass", "peak 300 MiB, estimate 250 MiB (1.20x); at most 503 MiB"),
        (trial(peak=60, total=10), "pass", "peak 60 MiB, estimate 10 MiB (6.00x); at most 143 MiB"),  # allocator slack
        (trial(peak=900, estimate=250), "fail", "peak 900 MiB, estimate 250 MiB (3.60x); at most 503 MiB"),
        (trial(peak=None, estimate=250), "fail", "no peak GPU memory recorded"),
        (trial(peak=300), "fail", "peak 300 MiB, but no estimate recorded"),
    ],
)
def test_peak_gpu_memory_against_the_estimate(record, status, detail):
    row = gpu_check.memory_row("memory[llama]", record, on_cuda=True)

    assert (row.name, row.status, row.detail) == ("memory[llama] lora", status, detail)
    assert gpu_check.memory_row("memory[llama]", record, on_cuda=False).status == "skip"


def test_gpu_memory_that_never_rose_fails():
    assert gpu_check.memory_rose_row([trial(peak=None), trial(peak=0)], 500.0, on_cuda=True).status == "fail"
    assert gpu_check.memory_rose_row([trial(peak=None), trial(peak=40)], 0.0, on_cuda=True).status == "fail"
    assert gpu_check.memory_rose_row([trial(peak=None), trial(peak=40)], 500.0, on_cuda=True).status == "pass"


def test_table_and_exit_status():
    rows = [gpu_check.Row("a", "pass", "fine"), gpu_check.Row("longer name", "skip", "on CPU")]

    assert gpu_check.exit_status(rows) == 0
    assert gpu_check.format_table(rows).splitlines()[-1] == "all 2 rows passed or were skipped"
    rows.append(gpu_check.Row("b", "fail", "broken"))
    assert gpu_check.exit_status(rows) == 1
    table = gpu_check.format_table(rows).splitlines()
    assert table[-2] == "b            FAIL    broken" and table[-1] == "1 of 3 rows failed"
