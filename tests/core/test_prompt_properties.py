"""Properties of the prompt builder over arbitrary dialogues: the card's layout holds whatever people write."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import AIROBOROS_SYSTEM_PROMPT
from bot.core.messages import ChatMessage, Dialogue
from bot.core.prompts import AiroborosFormat, ChatTemplateFormat, PromptBuilder, merge_turns
from bot.errors import PromptError
from bot.inference.tokenizer import HFTokenizer
from bot.inference.types import Prompt

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MAX_NEW = 64
MARKERS = re.compile(r"USER:|ASSISTANT:")
# Plain unicode (astral, zero-width, right-to-left, private use) mixed with what attacks the layout.
TRICKS = st.sampled_from(
    [
        "USER:",
        "ASSISTANT:",
        "\nUSER: ",
        " ASSISTANT:",
        "</s>",
        "<s>",
        "<unk>",
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "\u200b",
        "\u202e",
        "\ue000",
        "\ue0010\ue001",
        "Alice:",
        "\nBob: ",
        "：",
        "\n",
    ]
)
TEXT = st.lists(st.one_of(st.text(max_size=30), TRICKS), max_size=6).map("".join)
NAME = st.one_of(
    st.none(), st.sampled_from(["Alice", "Bob", "USER", "ASSIS\u200bTANT", "\u200b"]), st.text(max_size=12)
)


@st.composite
def dialogues(draw: st.DrawFn) -> tuple[Dialogue, int]:
    """Any dialogue of arbitrary texts and names (ending with a person's message) and a context window."""
    count = draw(st.integers(1, 8))
    messages = [
        ChatMessage(role, draw(TEXT), draw(NAME) if role == "user" else None)
        for role in (draw(st.sampled_from(["user", "assistant"])) for _ in range(count - 1))
    ]
    messages.append(ChatMessage("user", draw(TEXT), draw(NAME)))
    return Dialogue(None, tuple(messages)), draw(st.sampled_from([MAX_NEW + 1, 200, 600, 2048]))


def build_or_refuse(builder: PromptBuilder, dialogue: Dialogue) -> Prompt | None:
    """The prompt, or None when the builder refuses with its documented PromptError."""
    try:
        return builder.build(dialogue, max_new_tokens=MAX_NEW)
    except PromptError:
        return None


@pytest.mark.timeout(120)
@PROPERTY
@given(case=dialogues())
def test_airoboros_prompts_keep_the_card_layout(llama_tokenizer: HFTokenizer, case: tuple[Dialogue, int]) -> None:
    """System line first, one marker per kept turn in order, one BOS, EOS only after assistant turns, within budget."""
    dialogue, window = case
    fmt = AiroborosFormat(AIROBOROS_SYSTEM_PROMPT)
    prompt = build_or_refuse(PromptBuilder(fmt, llama_tokenizer, context_length=window), dialogue)
    if prompt is None:
        return
    kept = merge_turns(dialogue.messages)[prompt.dropped_turns :]
    roles = {"user": "USER", "assistant": "ASSISTANT"}
    expected = AIROBOROS_SYSTEM_PROMPT + " "
    for turn in kept:
        expected += f"{roles[turn.role]}: {fmt.neutralize(turn.text)}" + (" " if turn.role == "user" else "</s>")
    assert prompt.text == expected + "ASSISTANT:"
    assert MARKERS.findall(prompt.text) == [f"{roles[turn.role]}:" for turn in kept] + ["ASSISTANT:"]
    assert len(prompt.token_ids) <= window - MAX_NEW
    ids = list(prompt.token_ids)
    assert ids[0] == llama_tokenizer.special_token_id("<s>")
    assert ids.count(ids[0]) == 1
    assert ids.count(llama_tokenizer.special_token_id("</s>")) == sum(turn.role == "assistant" for turn in kept)
    assert llama_tokenizer.special_token_id("<unk>") not in ids


@pytest.mark.timeout(120)
@PROPERTY
@given(case=dialogues())
def test_chat_template_prompts_add_no_special_tokens_from_text(
    embedded_tokenizer: tuple[HFTokenizer, int], case: tuple[Dialogue, int]
) -> None:
    """With the chat template, <|im_start|>/<|im_end|> appear once per kept message, whatever the texts hold."""
    dialogue, window = case
    tokenizer = embedded_tokenizer[0]
    builder = PromptBuilder(ChatTemplateFormat(tokenizer, "Be brief."), tokenizer, context_length=window)
    prompt = build_or_refuse(builder, dialogue)
    if prompt is None:
        return
    kept = len(merge_turns(dialogue.messages)[prompt.dropped_turns :])
    ids = list(prompt.token_ids)
    assert len(ids) <= window - MAX_NEW
    assert ids.count(tokenizer.special_token_id("<|im_start|>")) == kept + 2  # the system message and the answer
    assert ids.count(tokenizer.special_token_id("<|im_end|>")) == kept + 1
    assert tokenizer.special_token_id("<|endoftext|>") not in ids


@pytest.mark.timeout(60)
@PROPERTY
@given(texts=st.lists(TEXT, min_size=1, max_size=5))
def test_an_empty_or_too_small_window_only_ever_raises_prompt_error(
    llama_tokenizer: HFTokenizer, texts: list[str]
) -> None:
    """Whatever the texts, a window too small for them gives PromptError and nothing else."""
    builder = PromptBuilder(AiroborosFormat(AIROBOROS_SYSTEM_PROMPT), llama_tokenizer, context_length=MAX_NEW + 8)
    dialogue = Dialogue(None, tuple(ChatMessage("user", text, "Alice") for text in texts))
    with pytest.raises(PromptError):
        builder.build(dialogue, max_new_tokens=MAX_NEW)
