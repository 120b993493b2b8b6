"""Prompt formats: how a conversation (``slmbench.lm.prompts.build_messages``) and an answer become the
tokens a causal LM scores and trains on.

- ``chat``: the conversation through the tokenizer's chat template, generation prompt included. An
  answer is the verbalizer then the end of turn the template writes after an assistant message
  (``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``, ``<|end|>``...).
- ``completion``, for base models without a chat template: plain text. The system prompt, each
  demonstration as a ``Text: ...`` / ``Answer: <verbalizer>`` block, blocks a blank line apart, then
  ``Text: <text>`` / ``Answer:``; the tokenizer's BOS first when it adds one, never an EOS at the
  end. An answer is `` <verbalizer>`` then the blank line that ends a demonstration's answer.
- ``auto``: chat when the tokenizer has a chat template, else completion.

A completion answer's tokens, and the chat template's end of turn, are read off the format's own
rendering, tokenized in context, so a scored or trained answer is exactly what the prompt shows after
a demonstration's (a SentencePiece tokenizer adds a prefix space to a string tokenized alone, and BPE
splits newlines by what follows them). A chat answer's verbalizer is tokenized alone, as before.
Scoring, demonstration plans and fine-tuning all go through ``PromptFormat``: what is trained is what
is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from slmbench.records import PromptFormatName

PROMPT_FORMATS: tuple[str, ...] = get_args(PromptFormatName)
TEXT_CUE = "Text:"
ANSWER_CUE = "Answer:"
BLOCK_SEPARATOR = "\n\n"
_PROBE = "PROBE"
"""An assistant answer rendered only to find what the chat template writes after it."""


class PromptFormatError(ValueError):
    """The prompt format asked for does not fit the model: ``chat`` for a tokenizer without a chat template."""


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_prompt_format(tokenizer: Any, requested: str = "auto", model: str = "") -> Literal["chat", "completion"]:
    """``chat`` or ``completion``: ``requested`` for this tokenizer (``auto``: chat when it has a chat template)."""
    if requested not in PROMPT_FORMATS:
        raise ValueError(f"prompt format {requested!r}: expected one of {', '.join(PROMPT_FORMATS)}")
    if requested == "completion" or (requested == "auto" and not has_chat_template(tokenizer)):
        return "completion"
    if not has_chat_template(tokenizer):
        name = model or getattr(tokenizer, "name_or_path", "") or "the model"
        raise PromptFormatError(
            f"--prompt-format chat: {name} has no chat template (a base model?); use --prompt-format completion or auto"
        )
    return "chat"


def completion_text(conversation: Sequence[dict[str, str]]) -> str:
    """The conversation (system, then user/assistant demonstration turns, then the user's text) as a plain-text prompt."""
    system = [message["content"] for message in conversation if message["role"] == "system"]
    turns = [message for message in conversation if message["role"] != "system"]
    blocks = [f"{TEXT_CUE} {user['content']}\n{ANSWER_CUE} {answer['content']}" for user, answer in zip(turns[0::2], turns[1::2])]
    return BLOCK_SEPARATOR.join([*system, *blocks, f"{TEXT_CUE} {turns[-1]['content']}\n{ANSWER_CUE}"])


def _tokens_between(tokenizer: Any, text: str, start: int, end: int) -> list[int]:
    """The tokens of ``text`` (no special tokens added) that start within characters [start, end); an
    error if a token runs across either end (the span cannot be told apart in tokens)."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = []
    for token, (first, last) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        if first < start < last or (start <= first < end < last):
            raise ValueError(f"the tokenizer joins {text[start:end]!r} with the text around it in {text!r}")
        if start <= first < end:
            tokens.append(token)
    return tokens


@dataclass(frozen=True)
class PromptFormat:
    """A prompt format resolved for one tokenizer: prompts and answers as token ids."""

    tokenizer: Any
    name: Literal["chat", "completion"]

    @classmethod
    def of(cls, tokenizer: Any, requested: str = "auto", model: str = "") -> PromptFormat:
        return cls(tokenizer, resolve_prompt_format(tokenizer, requested, model))

    def prompts(self, conversations: Sequence[list[dict[str, str]]]) -> list[list[int]]:
        """Token ids of each conversation, ready for the assistant's answer."""
        if not conversations:
            return []
        if self.name == "chat":
            texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        # Added by hand rather than by add_special_tokens, which may also append an EOS (the prompt goes on).
        starts_with_bos = bos is not None and self.tokenizer("x")["input_ids"][:1] == [bos]
        ids = self.tokenizer([completion_text(c) for c in conversations], add_special_tokens=False)["input_ids"]
        return [[bos, *prompt] if starts_with_bos else prompt for prompt in ids]

    def answer(self, verbalizer: str) -> list[int]:
        """The verbalizer as a complete answer: its tokens then the end of the answer, so "sport" does not
        collect "sports"' mass."""
        if self.name == "chat":
            return [*self.tokenizer(verbalizer, add_special_tokens=False)["input_ids"], self._end_of_turn()]
        demonstration = [{"role": "user", "content": "x"}, {"role": "assistant", "content": verbalizer}, {"role": "user", "content": "x"}]
        text = completion_text(demonstration)
        start = text.index(ANSWER_CUE) + len(ANSWER_CUE)
        return _tokens_between(self.tokenizer, text, start, start + len(f" {verbalizer}{BLOCK_SEPARATOR}"))

    def _end_of_turn(self) -> int:
        """The first token the chat template writes after an assistant's answer; EOS if it writes nothing."""
        conversation = [{"role": "system", "content": "x"}, {"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}]
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False)
        after = text.rindex(_PROBE) + len(_PROBE)
        tokens = _tokens_between(self.tokenizer, text, after, len(text))
        return tokens[0] if tokens else self.tokenizer.eos_token_id


def describe_prompt_format(load_tokenizer: Callable[[], Any], requested: str, model: str) -> tuple[str, Any]:
    """(the prompt format ``model`` will be prompted in, its tokenizer), read from the tokenizer alone, for
    ``--dry-run`` and ``validate``. Where ``load_tokenizer`` fails here: that the model's loading decides, and None."""
    from slmbench.common.text import first_line

    try:
        tokenizer = load_tokenizer()
    except Exception as error:  # noqa: BLE001 - offline, gated, remote code...: the trial finds out
        return f"{requested}, decided when the model loads (its tokenizer cannot be loaded here: {first_line(error)})", None
    resolved = resolve_prompt_format(tokenizer, requested, model)
    if requested != "auto":
        return resolved, tokenizer
    return f"{resolved} (auto: the tokenizer has {'a' if resolved == 'chat' else 'no'} chat template)", tokenizer
