"""``render-prompt``: the exact string a conversation becomes, for anyone to check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.config import Config
from bot.core.messages import ChatMessage, Dialogue
from bot.errors import PromptError
from bot.inference.types import Prompt


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str
    name: str | None = None


class _Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str | None = None
    messages: list[_Message]


def read_dialogue(source: str) -> Dialogue:
    """Parse a conversation JSON file (``-`` for stdin) into a :class:`Dialogue`."""
    import sys

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise PromptError(f"{source}: cannot read input ({error.strerror or error})") from None
    try:
        data = _Conversation.model_validate(json.loads(text))
    except json.JSONDecodeError as error:
        raise PromptError(f"{source}: not valid JSON: {error}") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise PromptError(f"{source}: invalid conversation: {problems}") from None
    if not data.messages:
        raise PromptError(f"{source}: the conversation has no messages")
    if data.messages[-1].role != "user":
        raise PromptError(f"{source}: the last message must be the user's (the prompt ends where the model answers)")
    messages = tuple(ChatMessage(m.role, m.content, m.name) for m in data.messages)
    return Dialogue(data.system, messages)


def render(config: Config, dialogue: Dialogue, *, variant: str | None, prompt_format: str | None) -> Prompt:
    """Build the prompt for ``dialogue`` with the variant's real tokenizer and budget."""
    from bot.core.engine import make_builder
    from bot.inference.loading import load_tokenizer

    model = config.model(variant) if variant else config.default_model
    tokenizer, context = load_tokenizer(model, cache_dir=config.inference.cache_dir)
    builder = make_builder(model, config, tokenizer, context, prompt_format=prompt_format)
    return builder.build(dialogue, max_new_tokens=config.generation.max_new_tokens)
