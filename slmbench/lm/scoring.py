"""The scoring engine: classify with a causal LM by the log-likelihood of each allowed answer.

For every conversation and every choice it computes log P(choice tokens, end of answer | prompt), the
choice being the assistant's complete answer, and returns the softmax over choices. Work is
organised so that nothing is computed twice:

1. Prompts are rendered in the prompt format (``slmbench.lm.prompt_format``: the chat template with
   its generation prompt, or plain text for a base model) and tokenized.
2. The longest token prefix shared by all prompts (system prompt, instruction, fixed
   demonstrations) is run once; its key/value cache is reused by every later forward pass.
3. Prompts are sorted by length and batched ``batch_size`` at a time, so padding stays small. A
   row holds one prompt's remaining tokens followed by one short branch per choice (the choice's
   tokens but the last); a 4D attention mask lets the prompt see the shared prefix and itself, and
   each branch its prompt and itself only. One forward pass thus scores every choice of every
   prompt in the batch: each prompt is run once, not once per choice.
4. Logits (the vocabulary projection) are computed only where an answer token is predicted.

On hardware with native bfloat16 matmuls an fp32 model runs under bfloat16 autocast (about twice
as fast on an AVX512-BF16 CPU). The vocabulary projection is computed in fp32 whenever anything
runs in 16 bits, a bf16 or fp16 model on a GPU included (it runs on a few positions only, and bf16
logits were the main cause of labels differing from fp32). Needs a
model whose forward accepts ``position_ids``, a 4D ``attention_mask`` and a 2D ``logits_to_keep``
(transformers' decoder LMs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from slmbench.common.progress import ProgressReporter


@dataclass
class ChoiceScores:
    """What ``score_choices`` returns."""

    labels: list[int]
    """Index of the most likely choice, per conversation."""
    probabilities: np.ndarray
    """(n_conversations, n_choices) softmax over the choices' summed token log-likelihoods."""
    log_likelihoods: np.ndarray
    """(n_conversations, n_choices) summed log-likelihood of each choice's tokens."""
    prompt_tokens: list[int]
    """Prompt length in tokens, per conversation (shared prefix included)."""
    shared_prefix_tokens: int
    """Tokens at the start of every prompt, computed once."""
    compute_dtype: str
    """``bfloat16`` when run under autocast, else the model's dtype."""


@dataclass
class _Branches:
    """The choices laid out after a prompt, identical for every row up to the prompt's length."""

    tokens: list[int]
    """Every choice's answer tokens but the last, choice after choice."""
    branch: list[int]
    """c + 1 for the tokens of choice c (0 is reserved for prompt tokens)."""
    offsets: list[int]
    """Position of each token after the prompt's end."""
    queries: list[int]
    """Per answer token, where the token predicting it is, counted from the prompt's end (-1: the prompt's last)."""
    targets: list[int]
    """Per answer token, its id."""
    choice: list[int]
    """Per answer token, its choice."""

    @classmethod
    def of(cls, answers: Sequence[Sequence[int]]) -> _Branches:
        branches = cls([], [], [], [], [], [])
        for c, answer in enumerate(answers):
            first = len(branches.tokens)
            branches.tokens += answer[:-1]
            branches.branch += [c + 1] * (len(answer) - 1)
            branches.offsets += range(len(answer) - 1)
            branches.queries += [-1, *range(first, first + len(answer) - 1)]
            branches.targets += answer
            branches.choice += [c] * len(answer)
        return branches


def sliding_window(config: Any) -> int | None:
    """The attention window of a model whose layers include sliding-window ones (Gemma 2 and 3, Qwen 2
    with ``use_sliding_window``...: the layer types that take a per-type mask mapping), else None. A
    multimodal model's (Gemma 3 4B and up) are in its text config."""
    text = config.get_text_config(decoder=True)
    return text.sliding_window if "sliding_attention" in (getattr(text, "layer_types", None) or ()) else None


def attention_masks(visible: torch.Tensor, dtype: torch.dtype, queries: torch.Tensor, keys: torch.Tensor, window: int | None) -> Any:
    """The (rows, 1, q, k) additive mask of the boolean (rows, q, k) ``visible``; with a sliding ``window``,
    the per-layer-type mapping such models take, whose sliding layers' mask also hides keys ``window``
    or more positions back (``queries``, ``keys``: the (rows, q) and (rows, k) positions), as the model's
    own mask would. Shared by the scoring engine and the fine-tuning packer."""
    import torch

    def additive(seen: torch.Tensor) -> torch.Tensor:
        return torch.zeros(seen.shape, dtype=dtype, device=seen.device).masked_fill(~seen, torch.finfo(dtype).min)[:, None]

    if window is None:
        return additive(visible)
    near = queries[:, :, None] - keys[:, None, :] < window
    return {"full_attention": additive(visible), "sliding_attention": additive(visible & near)}


def _batch_inputs(
    suffixes: Sequence[Sequence[int]], branches: _Branches, prefix_len: int, pad_id: int, dtype: torch.dtype, window: int | None = None
) -> dict[str, Any]:
    """Model inputs for rows of prompt suffix + choice branches, right-padded, after the shared prefix
    (with a sliding ``window``, per-layer-type masks: ``attention_masks``)."""
    import torch

    width = max(map(len, suffixes)) + len(branches.tokens)
    tokens = torch.full((len(suffixes), width), pad_id)
    branch = torch.full((len(suffixes), width), -1)  # -1: padding, seen by padding only
    positions = torch.arange(width).repeat(len(suffixes), 1)
    queries = []
    for row, suffix in enumerate(suffixes):
        n = len(suffix)
        tokens[row, : n + len(branches.tokens)] = torch.tensor([*suffix, *branches.tokens])
        branch[row, : n + len(branches.tokens)] = torch.tensor([0] * n + branches.branch)
        positions[row, n : n + len(branches.tokens)] = n + torch.tensor(branches.offsets, dtype=torch.long)
        queries.append([n + q for q in branches.queries])
    visible = ((branch[:, None, :] == 0) | (branch[:, None, :] == branch[:, :, None])) & (positions[:, None, :] <= positions[:, :, None])
    visible = torch.cat([torch.ones(len(suffixes), width, prefix_len, dtype=torch.bool), visible], dim=2)
    query = positions + prefix_len
    key = torch.cat([torch.arange(prefix_len).expand(len(suffixes), -1), query], dim=1)
    return {
        "input_ids": tokens,
        "position_ids": query,
        "attention_mask": attention_masks(visible, dtype, query, key, window),
        "logits_to_keep": torch.tensor(queries),
    }


def new_cache(config: Any, pairs: Sequence[tuple[Any, Any]] | None = None) -> Any:
    """A key/value cache (holding ``pairs`` per layer). A sliding-window model's gets no config: its
    sliding layers would keep only the last window of keys, while the engine's masks span every
    position and hide what lies outside the window themselves."""
    from transformers import DynamicCache

    kwargs = {} if sliding_window(config) else {"config": config}
    return DynamicCache(pairs, **kwargs) if pairs is not None else DynamicCache(**kwargs)


def _to(value: Any, device: Any) -> Any:
    """A tensor, or a mapping of tensors (per-layer-type masks), on ``device``."""
    return {name: tensor.to(device) for name, tensor in value.items()} if isinstance(value, dict) else value.to(device)


def _repeat(prefix: Any, n: int, config: Any) -> Any:
    """A new cache holding the shared prefix's keys and values ``n`` times (the model appends to it)."""
    if prefix is None:
        return new_cache(config)
    return new_cache(config, [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v, *_ in prefix])


@contextmanager
def _fp32_vocabulary_projection(model: Any) -> Iterator[None]:
    """The vocabulary projection (output embeddings) computed in fp32, whatever the model's dtype or
    an enclosing autocast: bf16 logits (8 bits of mantissa: steps of 0.125 at a logit of 20) were the
    main cause of labels differing from fp32. A 16-bit head's weights are copied to fp32 once, for the
    duration (vocabulary x hidden x 4 bytes).

    The projection's forward is swapped for an fp32 one (a forward hook would run the 16-bit
    projection first, then replace its output).
    """
    import torch

    head = model.get_output_embeddings()
    own_forward = vars(head).get("forward")
    weight = head.weight.float()
    bias = None if getattr(head, "bias", None) is None else head.bias.float()

    def fp32_forward(hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(model.device.type, enabled=False):
            return torch.nn.functional.linear(hidden.float(), weight, bias)

    head.forward = fp32_forward
    try:
        yield
    finally:
        if own_forward is None:
            del head.forward
        else:
            head.forward = own_forward


@contextmanager
def _precision(model: Any, bfloat16_autocast: bool) -> Iterator[None]:
    """bfloat16 autocast if asked (for an fp32 model), and the vocabulary projection in fp32 whenever
    anything runs in 16 bits (the model's own dtype or the autocast)."""
    import torch

    sixteen_bit = bfloat16_autocast or model.dtype != torch.float32
    with (
        _fp32_vocabulary_projection(model) if sixteen_bit else nullcontext(),
        torch.autocast(model.device.type, dtype=torch.bfloat16) if bfloat16_autocast else nullcontext(),
    ):
        yield


def fast_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (faster than fp32)."""
    import torch

    if device.type == "cuda":  # not emulated: a T4 emulates bf16, slowly
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        from slmbench.lm.hardware import native_bfloat16_cpu

        return native_bfloat16_cpu()
    return False


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every sequence shares (0 for no sequences)."""
    if not sequences:
        return 0
    first, n = sequences[0], min(map(len, sequences))
    for i in range(n):
        if any(sequence[i] != first[i] for sequence in sequences):
            return i
    return n


def tokenize_prompts(tokenizer: Any, conversations: Sequence[list[dict]], prompt_format: str = "auto") -> list[list[int]]:
    """Token ids of each conversation rendered in ``prompt_format`` (auto, chat or completion), ready for the assistant's answer."""
    from slmbench.lm.prompt_format import PromptFormat

    return PromptFormat.of(tokenizer, prompt_format).prompts(conversations)


def answer_tokens(tokenizer: Any, choice: str, prompt_format: str = "auto") -> list[int]:
    """The choice as a complete answer in ``prompt_format``: its tokens then the end of the answer (chat:
    the end of turn), so "sport" does not collect "sports"' mass."""
    from slmbench.lm.prompt_format import PromptFormat

    return PromptFormat.of(tokenizer, prompt_format).answer(choice)


def score_choices(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict]],
    choices: Sequence[str],
    *,
    batch_size: int = 8,
    progress: ProgressReporter | None = None,
    bfloat16: bool | None = None,
    prompt_format: str = "auto",
) -> ChoiceScores:
    """Score each choice as the assistant's answer to each conversation (see the module docstring).

    ``model`` must be in eval mode. ``batch_size`` prompts share a forward pass. ``bfloat16`` turns
    bfloat16 autocast of an fp32 model on or off; by default it is on where the hardware has native
    bfloat16. ``prompt_format``: auto, chat or completion (``slmbench.lm.prompt_format``).
    """
    from slmbench.lm.prompt_format import PromptFormat

    if not choices:
        raise ValueError("score_choices needs at least one choice")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rendering = PromptFormat.of(tokenizer, prompt_format)
    return score_token_choices(
        model,
        rendering.prompts(conversations),
        [rendering.answer(choice) for choice in choices],
        pad_id=pad_id,
        batch_size=batch_size,
        progress=progress,
        bfloat16=bfloat16,
    )


def score_token_choices(
    model: Any,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    *,
    pad_id: int = 0,
    batch_size: int = 8,
    progress: ProgressReporter | None = None,
    bfloat16: bool | None = None,
) -> ChoiceScores:
    """``score_choices`` on token ids: each prompt (ready for the answer) and each answer (its tokens
    then end of turn). ``pad_id`` fills the rows' ends, which no real token sees."""
    import torch

    from slmbench.common.progress import ProgressReporter

    if model.training:
        raise ValueError("score_choices needs the model in eval mode: call model.eval() first")
    progress = progress or ProgressReporter(enabled=False)
    # Keep at least one token per prompt out of the prefix: its logits predict the first answer token.
    prefix_len = min(common_prefix_length(prompts), min(map(len, prompts)) - 1) if prompts else 0
    autocast = model.dtype == torch.float32 and (fast_bfloat16(model.device) if bfloat16 is None else bfloat16)

    branches = _Branches.of(answers)
    targets, choice_of_target = torch.tensor(branches.targets, device=model.device), torch.tensor(branches.choice)
    log_likelihoods = torch.zeros(len(prompts), len(answers))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with (
        torch.no_grad(),  # not inference_mode: under it autocast re-casts the weights at every pass
        _precision(model, autocast),
        progress.task("Scoring choices", len(prompts)) as advance,
    ):
        prefix = None
        if prefix_len:
            prefix_ids = torch.tensor([prompts[0][:prefix_len]], device=model.device)
            prefix = model(prefix_ids, cache=new_cache(model.config), use_cache=True, logits_to_keep=1).cache
        window = sliding_window(model.config)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            inputs = _batch_inputs([prompts[i][prefix_len:] for i in batch], branches, prefix_len, pad_id, model.dtype, window)
            inputs = {name: _to(value, model.device) for name, value in inputs.items()}
            logits = model(**inputs, cache=_repeat(prefix, len(batch), model.config)).logits
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            token_log_probs = log_probs.gather(2, targets.expand(len(batch), -1)[..., None])[..., 0].cpu()
            per_choice = torch.zeros(len(batch), len(answers)).index_add_(1, choice_of_target, token_log_probs)
            log_likelihoods[batch] = per_choice
            advance(len(batch))

    probabilities = torch.softmax(log_likelihoods.double(), dim=1).numpy()
    return ChoiceScores(
        labels=probabilities.argmax(axis=1).tolist(),
        probabilities=probabilities,
        log_likelihoods=log_likelihoods.double().numpy(),
        prompt_tokens=[len(p) for p in prompts],
        shared_prefix_tokens=prefix_len,
        compute_dtype="bfloat16" if autocast else str(model.dtype).removeprefix("torch."),
    )
