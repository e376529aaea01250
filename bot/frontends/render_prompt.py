"""``render-prompt``: the exact string a conversation, a question on sources or a scene becomes, for anyone to check.

The input is a conversation, ``{"system": ..., "messages": [...]}``, or the card's closed-context question,
``{"system": ..., "sources": [{"metadata": {key: value}, "text": str}], "instruction": str}``: the sources become
``BEGININPUT`` blocks (metadata keys in the order given) and the instruction the ``BEGININSTRUCTION`` block, all
as one user turn. The instruction is used as given (``/ask`` adds its own sentences to the question).

A roleplay scene is ``{"system": ..., "scene": {"characters": [{"name": str, "description": str, "full_name":
str|null}], "humans": [str], "setting": str, "rules": [str]|null}, "messages": [...]}``: the card's scene sheet
(:mod:`bot.core.scenes`) as the first user turn, then the messages (human lines with their author in ``name``);
``messages`` may be empty (the scene's opening prompt).
"""

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


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, str] = {}
    text: str


class _Sources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str | None = None
    sources: list[_Source]
    instruction: str


class _Character(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    full_name: str | None = None


class _SceneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    characters: list[_Character]
    humans: list[str] = []
    setting: str = ""
    rules: list[str] | None = None


class _SceneConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str | None = None
    scene: _SceneSpec
    messages: list[_Message] = []


def read_dialogue(source: str) -> Dialogue:
    """Parse a conversation (or sources-and-instruction) JSON file (``-`` for stdin) into a :class:`Dialogue`."""
    import sys

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise PromptError(f"{source}: cannot read input ({error.strerror or error})") from None
    try:
        raw = json.loads(text)
        if isinstance(raw, dict) and "sources" in raw:
            return _sources_dialogue(_Sources.model_validate(raw), source)
        if isinstance(raw, dict) and "scene" in raw:
            return _scene_dialogue(_SceneConversation.model_validate(raw), source)
        data = _Conversation.model_validate(raw)
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


def _sources_dialogue(data: _Sources, source: str) -> Dialogue:
    """The closed-context prompt as a one-turn dialogue (metadata in the file's key order)."""
    from bot.core.sources import SourceText, blocks_prompt

    if not data.instruction.strip():
        raise PromptError(f"{source}: the instruction is empty")
    texts = [SourceText(tuple(s.metadata.items()), s.text) for s in data.sources]
    return Dialogue(data.system, (ChatMessage("user", blocks_prompt(texts, data.instruction)),))


def _scene_dialogue(data: _SceneConversation, source: str) -> Dialogue:
    """The scene sheet pinned first, then the scene's messages."""
    from bot.core.scenes import Scene, SceneCharacter, scene_dialogue

    if data.messages and data.messages[-1].role != "user":
        raise PromptError(f"{source}: the last message must be the user's (the prompt ends where the model answers)")
    try:
        scene = Scene(
            tuple(SceneCharacter(c.name, c.description, c.full_name) for c in data.scene.characters),
            tuple(data.scene.humans),
            data.scene.setting,
            None if data.scene.rules is None else tuple(data.scene.rules),
        )
    except PromptError as error:
        raise PromptError(f"{source}: {error}") from None
    messages = [ChatMessage(m.role, m.content, m.name) for m in data.messages]
    return scene_dialogue(scene, messages, system=data.system)


def render(config: Config, dialogue: Dialogue, *, variant: str | None, prompt_format: str | None) -> Prompt:
    """Build the prompt for ``dialogue`` with the variant's real tokenizer and budget."""
    from bot.core.engine import make_builder
    from bot.inference.loading import load_tokenizer

    model = config.model(variant) if variant else config.default_model
    tokenizer, context = load_tokenizer(model, cache_dir=config.inference.cache_dir)
    builder = make_builder(model, config, tokenizer, context, prompt_format=prompt_format)
    return builder.build(dialogue, max_new_tokens=config.generation.max_new_tokens)
