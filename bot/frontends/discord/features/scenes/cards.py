"""The cast's Character Cards measured against the window, and in each turn's prompt.

- :func:`check_fit`: ``/scene start`` and ``/scene add`` measure the sheet with the model's tokenizer before posting
  anything, and refuse a cast that leaves the conversation too little of the window, naming each card's size;
- :func:`card_dialogue`: a turn's prompt, with the lorebook entries its recent messages trigger.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.card_prompt import card_fields, scene_fit, with_lore
from bot.core.chat import ChatOptions, ChatService
from bot.core.lorebook import Lorebook
from bot.core.messages import ChatMessage, Dialogue
from bot.core.scenes import Scene, scene_dialogue
from bot.frontends.discord.features.scenes.cast import SceneError, scene_character
from bot.store import StoredCharacter, StoredScene


def _books(cast: Sequence[StoredCharacter]) -> list[Lorebook | None]:
    return [card_fields(c.extra).lorebook for c in cast]


async def check_fit(
    chat: ChatService,
    cast: Sequence[StoredCharacter],
    humans: Sequence[str],
    setting: str,
    rules: tuple[str, ...] | None,
    *,
    guild_id: int,
    channel_id: int,
) -> None:
    """Refuse (:class:`SceneError`) a cast whose scene would leave the conversation too little of the window."""
    options = await chat.options_for(guild_id, channel_id)
    builder = chat.engine.variant(options.variant).builder
    roleplay = chat.engine.config.roleplay
    scene = Scene(tuple(scene_character(c) for c in cast), tuple(humans), setting, rules)
    fit = scene_fit(
        scene,
        builder,
        _books(cast),
        max_new_tokens=chat.params(options).max_new_tokens,
        system=options.system,
        lore_budget=roleplay.lorebook_tokens,
        conversation_tokens=roleplay.conversation_tokens,
    )
    if not fit.fits:
        raise SceneError(fit.refusal())


async def check_joining(chat: ChatService, scene: StoredScene, newcomer: StoredCharacter, *, channel_id: int) -> None:
    """:func:`check_fit` for ``scene``'s cast and people with ``newcomer`` joining (``/scene add``)."""
    found = [await chat.store.characters.get_by_id(member.character_id) for member in scene.cast]
    cast = [character for character in found if character is not None] + [newcomer]
    humans = [human.name for human in scene.humans]
    await check_fit(chat, cast, humans, scene.setting, scene.rules, guild_id=scene.guild_id, channel_id=channel_id)


def card_dialogue(
    chat: ChatService, scene: Scene, cast: Sequence[StoredCharacter], turns: Sequence[ChatMessage], options: ChatOptions
) -> Dialogue:
    """The turn's dialogue: ``scene`` (built from ``cast``, in order) with the lorebook entries ``turns`` trigger."""
    builder = chat.engine.variant(options.variant).builder
    roleplay = chat.engine.config.roleplay
    scene = with_lore(
        scene,
        _books(cast),
        [turn.content for turn in turns],
        scan_depth=roleplay.lorebook_scan_messages,
        budget=roleplay.lorebook_tokens,
        count=lambda text: len(builder.tokenizer.encode_plain(text)),
    )
    return scene_dialogue(scene, turns, system=options.system, original_system=builder.format.default_system)
