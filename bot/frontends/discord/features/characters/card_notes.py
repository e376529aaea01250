"""What ``/character`` tells about a card beyond its fields: its size in the model's window, its creator's notes,
and what was cut at import; and the card's text as a message shows it, macros filled for the person reading.

Sizes are measured with the default model's tokenizer (:func:`bot.core.card_prompt.card_size`) against the window a
prompt has (the context window less ``[generation] max_new_tokens``), so a person sees before ``/scene start``
whether two long cards can share a scene.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import discord

from bot.core.card_prompt import card_fields, card_size, scene_character
from bot.core.cards import FIELD_MAX_CHARS
from bot.core.chat import ChatService
from bot.core.macros import fill_macros
from bot.store import StoredCharacter

EMBED_LIMIT = 6000
"""Discord's limit on all the text of a message's embeds."""
FIELD_LIMIT = 1024
"""Discord's limit on an embed field's value."""
_LABELS = {"description": "description", "personality": "personality", "speaking_style": "speaking style"}


def size_text(chat: ChatService, character: StoredCharacter) -> str:
    """``Size: 412 tokens on a scene's sheet, of the 1,536 a prompt has ...`` for the character's card."""
    builder = chat.engine.variant().builder
    config = chat.engine.config
    reply = config.generation.max_new_tokens
    lorebook = card_fields(character.extra).lorebook
    size = card_size(
        scene_character(character),
        lorebook,
        count=lambda text: len(builder.tokenizer.encode_plain(text)),
        lore_budget=config.roleplay.lorebook_tokens,
    )
    text = (
        f"Size: {size.sheet:,} tokens on a scene's sheet, of the {builder.context_length - reply:,} a prompt has "
        f"(a {builder.context_length:,}-token window less {reply:,} for the reply)"
    )
    if size.examples:
        text += f"; its example dialogue adds {size.examples:,} while there is room"
    if size.lorebook:
        text += f"; its lorebook up to {size.lorebook:,} a turn"
    return text + "."


def trimmed_text(trimmed: Mapping[str, int], character: StoredCharacter) -> str:
    """What was cut at import: ``Its description was 6,000 characters long; the first 3,993 were kept ...``."""
    kept = {"description": character.description, "personality": character.personality}
    kept["speaking_style"] = character.speaking_style
    parts = [
        f"its {_LABELS.get(name, name)} was {length:,} characters long; the first {len(kept.get(name, '')):,} were kept"
        for name, length in trimmed.items()
    ]
    if not parts:
        return ""
    return f"Trimmed at import: {'; '.join(parts)} (Discord's edit form holds {FIELD_MAX_CHARS:,})."


def shown_to(character: StoredCharacter, viewer: str) -> StoredCharacter:
    """``character`` with the macros of its description, personality and speaking style filled for ``viewer``."""

    def filled(text: str) -> str:
        return fill_macros(text, char=character.name, user=viewer)

    return dataclasses.replace(
        character,
        description=filled(character.description),
        personality=filled(character.personality),
        speaking_style=filled(character.speaking_style),
    )


def add_card_fields(embed: discord.Embed, chat: ChatService, character: StoredCharacter, viewer: str) -> None:
    """Add the creator's notes (macros filled for ``viewer``), the size and any trim to ``/character show``'s embed,
    each shortened to what Discord's limits leave."""
    fields = card_fields(character.extra)
    notes = fill_macros(fields.creator_notes, char=character.name, user=viewer)
    for name, value in (
        ("Size in the model's window", size_text(chat, character)),
        ("Trimmed at import", trimmed_text(fields.trimmed, character)),
        ("Creator's notes", notes),
    ):
        room = min(FIELD_LIMIT, EMBED_LIMIT - len(embed) - len(name))
        if value and room > 1:
            embed.add_field(name=name, value=value if len(value) <= room else value[: room - 1] + "…", inline=False)
