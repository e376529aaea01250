"""A scene opened with its characters' greetings (``first_mes``) instead of a generated opening.

When every character's card has a greeting, ``/scene start`` posts them (macros filled for the person who started
the scene), each in its character's voice under one 🎭 header, and stores them as the model's first turn; once
stored, the header offers Regenerate like any turn's (a generated opening then replaces the greetings). The cards'
``alternate_greetings`` stay on the stored card (:func:`bot.core.card_prompt.greetings` lists them all).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import discord

from bot.core.card_prompt import card_fields, greetings
from bot.core.chat import Author
from bot.core.script import script_text
from bot.errors import BotError
from bot.frontends.discord.features.scenes.cast import human_name
from bot.frontends.discord.features.scenes.turn import HEADER, Stage
from bot.frontends.discord.ui.feedback import NO_MENTIONS, refusal, report
from bot.frontends.discord.ui.views import scene_view
from bot.store import Role, SceneMember, StoredCharacter

_log = logging.getLogger(__name__)


async def open_with_greetings(
    stage: Stage, thread: discord.Thread, starter: Author, cast: Sequence[StoredCharacter], source: Any
) -> bool:
    """Open the scene with the characters' greetings, if every card has one (False: it has not been opened).

    Runs in the conversation's turn (a person's first message waits for the greetings to be stored). A failure is
    reported to ``source`` (the command's interaction) and the scene stays open, without an opening.
    """
    user, group = human_name(starter.name), len(cast) > 1
    opening = [greetings(card_fields(c.extra), char=c.name, user=user, group=group) for c in cast]
    if not all(opening):
        return False
    key = f"thread:{thread.id}"
    try:
        async with stage.chat.quiet([key]):
            stored = await stage.store.scenes.get(thread.id)
            members = {member.character_id: member for member in stored.cast} if stored is not None else {}
            try:
                header = await thread.send(HEADER, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as error:
                raise refusal(error, "write in this thread") from error
            shown = [header.id]
            for character, texts in zip(cast, opening, strict=True):
                member = members.get(character.id, SceneMember(character.id))
                speaker = await stage.avatars.speaker(thread, character, member)
                shown += (await stage.voice.say(thread, speaker, texts[0])).message_ids
            script = script_text((c.name, texts[0]) for c, texts in zip(cast, opening, strict=True))
            conversation = await stage.store.get_or_create_conversation(
                key, guild_id=thread.guild.id, channel_id=thread.id, owner_id=starter.id
            )
            tokens = len(stage.chat.engine.variant().builder.tokenizer.encode_plain(script))
            await stage.store.add_message(
                conversation.id, role=Role.ASSISTANT, content=script, token_count=tokens, external_ids=shown
            )
            with contextlib.suppress(discord.HTTPException):  # stored: the turn's buttons, as after any turn
                await header.edit(view=scene_view(thread.id, streaming=False))
    except BotError as error:
        _log.info("The greetings of the scene in %d could not be shown: %s", thread.id, error)
        await report(source, error)
    return True
