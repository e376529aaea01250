"""Roleplay scenes in Discord: ``/scene start|nudge|add|remove|end`` and every message in a scene thread.

A scene lives in a public thread the bot opens from an echo of the command. The thread is an ordinary conversation
(``thread:<id>``) of the :class:`~bot.core.chat.ChatService`, so its messages are stored and ordered like any
conversation's; only the prompt differs: :func:`bot.core.scenes.scene_dialogue` puts the card's scene sheet
first, built from the scene as stored *when the turn is built* (so a cast change or a new person shows in the very
next prompt). The model's script streams through :class:`~bot.core.script.ScriptParser`: each character's block
is one message posted through the channel's one webhook
(:class:`~bot.frontends.discord.ui.voices.CharacterVoice`) under the
character's name and avatar; a line for a person stops the generation and is never shown; a line for a name not
in the scene is dropped. What is stored as the turn is the script of the lines shown.

People join a scene by speaking in its thread (the one who started it joins at once); each is added to the stored
scene, so the sheet's ``USER/`` lines and the stop strings follow.

Nudge: ``/scene nudge character:Yoda`` answers the conversation as it stands with the prompt ending
``ASSISTANT: Yoda:`` (the assistant turn left open, after the previous script if the last turn was the model's),
so the model can only go on with Yoda's line; nothing is stored for the nudge itself.

Avatars: a character's https ``avatar_url`` is used as is. An uploaded avatar (bytes in the store) is attached,
as ``avatar-<character id>.<ext>``, to a message the bot posts: the echo the thread starts from (for the cast at
``/scene start``) or the "joins the scene" message (``/scene add``). That message's id is stored with the cast
member; the attachment's URL is read from the message when a character speaks (re-read every
:data:`AVATAR_URL_TTL` seconds, since Discord's signed attachment URLs expire).

After a restart nothing is lost: the scene threads are read from the store when the cog loads (so the
conversations cog leaves them alone from the first message on), and each turn reads the scene from the store.

Buttons: webhook messages cannot carry the bot's buttons, so each turn is headed by a small bot message, "🎭",
posted before the characters' lines (Discord cannot put a message above others later, and the header is there from
the start, so Stop works at once). While the turn streams it offers **Stop** (the person whose message or command
started the turn, or anyone with Manage Messages): the lines shown so far stay and are stored (``partial``), and
the header reads "🎭 *(stopped)*". Once the turn is stored it offers **Regenerate**; a newer turn takes the buttons
off the previous header. The header's id is stored with the turn's character messages (its message links), so
"the latest turn" is read from the store and the buttons work after a restart; deleting the header, like deleting
any of the turn's messages, takes the turn out of the history. Regenerate deletes the turn's character messages
and plays the turn again through :meth:`ChatService.redo` with the scene's dialogue, under the same header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.chat import Author
from bot.core.messages import ChatMessage
from bot.core.scenes import Scene, summary_request
from bot.core.script import first_speaker
from bot.core.turn_order import cast_mode
from bot.errors import BotError, BusyError, GenerationError, PromptError
from bot.frontends.discord.app.proxies import Sent
from bot.frontends.discord.features.scenes.cards import check_fit, check_joining
from bot.frontends.discord.features.scenes.cast import (
    SceneError,
    avatar_file,
    cast_member,
    find_cast,
    human_name,
    scene_character,
    scene_here,
    short,
    split_names,
    split_rules,
)
from bot.frontends.discord.features.scenes.greetings import open_with_greetings
from bot.frontends.discord.features.scenes.turn import Stage, Turn
from bot.frontends.discord.services import DiscordBot, Services
from bot.frontends.discord.ui.feedback import (
    NO_MENTIONS,
    TO_OPEN_A_THREAD,
    TO_POST_IN_A_FORUM,
    DiscordRefusal,
    refusal,
    report,
    require,
)
from bot.frontends.discord.ui.rendering import thread_name
from bot.frontends.discord.ui.views import SceneAction
from bot.frontends.discord.ui.voices import CharacterVoice
from bot.store import Role, SceneMember, StoredScene

_log = logging.getLogger(__name__)

PROXY_STORE_WAIT = 30.0
"""Seconds a proxy bot's repost waits for the person's message to be stored (it is, unless the store fails)."""
MODE_TEXTS = {
    "model": "the model chooses who speaks (several characters a turn)",
    "addressed": "one character answers: the one you name, else the one heard least recently",
    "round-robin": "the characters take turns, in cast order",
}
"""What each ``/scene mode`` does, as the command's choices and its answer show it."""


class Scenes(commands.Cog):
    """Multi-character roleplay scenes in threads."""

    scene = app_commands.Group(
        name="scene", description="Roleplay scenes: characters and people together in a thread", guild_only=True
    )

    def __init__(self, bot: DiscordBot, services: Services) -> None:
        self.bot = bot
        self.chat = services.chat
        self.store = self.chat.store
        self.replies = replies = services.replies
        self.access = services.access
        self.proxies = services.proxies
        self.stage = Stage(self.chat, replies, CharacterVoice(replies.throttles))
        self.active: set[int] = set()
        """Threads whose scene is going on (ended scenes' threads stay claimed but get no answer)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pressed: set[int] = set()
        """Scene threads with a Regenerate press being handled."""

    async def cog_load(self) -> None:
        """Claim every scene thread before the first message arrives (scenes survive restarts)."""
        self.replies.claimed.update(await self.store.scenes.thread_ids())
        self.active = await self.store.scenes.thread_ids(active=True)

    async def cog_unload(self) -> None:
        """On shutdown, turns in flight stop; each is stored as far as it got."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    # -- commands --------------------------------------------------------------------------------

    @scene.command(name="start")
    @app_commands.describe(
        characters="The server's characters who take part, separated by commas (see /character list)",
        setting="Where and what the scene is about",
        rules="Your own rules, separated by semicolons (default: the model card's rules)",
        forum="A forum to start the scene in, as a new post (default: a thread in this channel)",
    )
    async def start_command(
        self,
        interaction: discord.Interaction[Any],
        characters: app_commands.Range[str, 1, 500],
        setting: app_commands.Range[str, 1, 1000],
        rules: app_commands.Range[str, 1, 1000] | None = None,
        forum: discord.ForumChannel | None = None,
    ) -> None:
        """Start a roleplay scene in a new thread (or forum post); the characters open it."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None  # the group is guild-only
        channel = forum or interaction.channel
        if isinstance(channel, discord.ForumChannel):
            me = channel.guild.me
            require(channel.permissions_for(me) if me is not None else interaction.app_permissions, TO_POST_IN_A_FORUM)
        elif isinstance(channel, discord.TextChannel):
            require(interaction.app_permissions, TO_OPEN_A_THREAD)
        else:
            raise SceneError("Use /scene start in a text channel (the scene opens a thread there), or pick a forum.")
        cast = await find_cast(self.store, interaction.guild_id, split_names(characters))
        author = Author(interaction.user.id, interaction.user.display_name)
        # Checked before anything is posted: names with a colon, a person named like a character, ...
        Scene(tuple(scene_character(c) for c in cast), (human_name(author.name),), setting, split_rules(rules))
        people = [human_name(author.name)]  # and the cast's cards must fit the model's window
        await check_fit(
            self.chat, cast, people, setting, split_rules(rules), guild_id=interaction.guild_id, channel_id=channel.id
        )
        files = [file for file in (avatar_file(c) for c in cast) if file is not None]
        names = ", ".join(f"**{c.name}**" for c in cast)
        echo_text = short(f"🎭 **{author.name}** starts a scene with {names}: {setting}")
        thread, echo_id = await _open_scene(channel, echo_text, files, thread_name(setting))
        avatars = echo_id if files else None
        await self.store.scenes.create(
            thread_id=thread.id,
            guild_id=interaction.guild_id,
            creator_id=author.id,
            setting=setting,
            rules=split_rules(rules),
            cast=[SceneMember(c.id, avatars if c.has_avatar and not c.avatar_url else None) for c in cast],
        )
        await self.store.scenes.add_human(thread.id, author.id, human_name(author.name))
        self.replies.claimed.add(thread.id)
        self.active.add(thread.id)
        await interaction.edit_original_response(content=f"Your scene is in {thread.mention}.")
        if await open_with_greetings(self.stage, thread, author, cast, interaction):
            return  # every card has a greeting: they open the scene
        await self._play(thread, author, None, interaction)

    @scene.command(name="nudge")
    @app_commands.describe(character="The character who speaks next")
    async def nudge_command(self, interaction: discord.Interaction[Any], character: str) -> None:
        """Make a character of this scene speak next."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        thread, _ = await scene_here(self.store, interaction)
        found = await cast_member(self.store, interaction, character)
        author = Author(interaction.user.id, interaction.user.display_name)
        if await self._play(thread, author, None, interaction, nudge=found.name):
            await interaction.edit_original_response(content=f"{found.name} spoke.")

    @scene.command(name="mode")
    @app_commands.describe(mode="Who speaks when nobody names a character or replies to one")
    @app_commands.choices(
        mode=[app_commands.Choice(name=text, value=value) for value, text in MODE_TEXTS.items()],
    )
    async def mode_command(self, interaction: discord.Interaction[Any], mode: str) -> None:
        """Choose who speaks next in this scene when nobody is addressed."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        thread, _ = await scene_here(self.store, interaction, directing=True)
        await self.store.scenes.set_mode(thread.id, cast_mode(mode))
        await interaction.edit_original_response(content=f"From now on: {MODE_TEXTS[cast_mode(mode)]}.")

    @scene.command(name="add")
    @app_commands.describe(character="A character of this server to bring into the scene")
    async def add_command(self, interaction: discord.Interaction[Any], character: str) -> None:
        """Bring another character into this scene."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        thread, scene = await scene_here(self.store, interaction, directing=True)
        found = (await find_cast(self.store, scene.guild_id, [character]))[0]
        if any(member.character_id == found.id for member in scene.cast):
            raise SceneError(f"{found.name} is already in this scene.")
        await check_joining(self.chat, scene, found, channel_id=thread.id)
        file = avatar_file(found)
        try:
            posted = await thread.send(
                f"🎭 **{found.name}** joins the scene.",
                files=[file] if file is not None else [],
                allowed_mentions=NO_MENTIONS,
            )
        except discord.HTTPException as error:
            raise refusal(error, "write in this thread") from error
        await self.store.scenes.add_character(thread.id, found.id, avatar_message_id=posted.id if file else None)
        await interaction.edit_original_response(content=f"{found.name} joined the scene.")

    @scene.command(name="remove")
    @app_commands.describe(character="The character who leaves the scene")
    async def remove_command(self, interaction: discord.Interaction[Any], character: str) -> None:
        """Take a character out of this scene."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        thread, scene = await scene_here(self.store, interaction, directing=True)
        found = await cast_member(self.store, interaction, character)
        if len(scene.cast) <= 1:
            raise SceneError(f"{found.name} is the last character of the scene; end it with /scene end instead.")
        await self.store.scenes.remove_character(thread.id, found.id)
        try:
            await thread.send(f"🎭 **{found.name}** leaves the scene.", allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as error:
            raise refusal(error, "write in this thread") from error
        await interaction.edit_original_response(content=f"{found.name} left the scene.")

    @scene.command(name="end")
    async def end_command(self, interaction: discord.Interaction[Any]) -> None:
        """End this scene: the model sums it up and the thread is archived."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        thread, stored = await scene_here(self.store, interaction, directing=True)
        if not await self.store.scenes.end(thread.id):
            raise SceneError("This scene has already ended.")
        self.active.discard(thread.id)
        author = Author(interaction.user.id, interaction.user.display_name)
        summary = ""
        try:
            summary = await self._summary(thread, author, stored)
        except BotError as error:
            _log.info("No summary for the scene in %d: %s", thread.id, error)
        text = "🎭 **The scene ends.**" + (f"\n{summary}" if summary else "")
        try:
            await thread.send(short(text), allowed_mentions=NO_MENTIONS)
            await thread.edit(archived=True)
        except discord.HTTPException as error:
            raise refusal(error, "close the scene's thread") from error
        await interaction.edit_original_response(content="The scene has ended.")

    @nudge_command.autocomplete("character")
    @remove_command.autocomplete("character")
    @add_command.autocomplete("character")
    async def _names(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        wanted = current.casefold()
        names = [c.name for c in await self.store.characters.list(interaction.guild_id) if wanted in c.name.casefold()]
        return [app_commands.Choice(name=name, value=name) for name in names[:25]]

    # -- messages --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Every person's message in a going scene is a turn; the characters answer it."""
        channel = message.channel
        if channel.id not in self.active or not isinstance(channel, discord.Thread):
            return
        if message.webhook_id is not None and not self.stage.voice.owns(message.webhook_id):
            await self._proxied(message, channel)  # PluralKit, Tupperbox: a person's line under another name
            return
        if message.author.bot:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        assert self.bot.user is not None
        content = re.sub(rf"<@!?{self.bot.user.id}>", "", message.content).strip()
        if not content or not self.replies.first_time(message.id):
            return  # an attachment alone, no Message Content intent, or a second delivery of a message
        if not self.access.serves(message) or not self.access.admit(message, self.replies.spawn):
            return  # refused: silence (past the rate limit: one short reply per wait)
        # No await before the chat service takes the message: the scene's lines keep the order they arrived in.
        author = Author(message.author.id, message.author.display_name)
        sent = self.proxies.sent(message)
        await self._play(
            channel, author, content, message, external_id=message.id, replied_to=_replied_to(message), sent=sent
        )

    async def _proxied(self, message: discord.Message, thread: discord.Thread) -> None:
        """A proxy bot reposted a person's line: the stored line becomes the repost, the person goes by its name."""
        sent = self.proxies.reposted(message)
        if sent is None:
            return  # another bot's post, not a person's line: not part of the scene
        name = human_name(message.author.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sent.stored.wait(), PROXY_STORE_WAIT)  # the repost can beat the store
        stored = await self.store.message_by_external_id(sent.message_id)
        if stored is not None:
            await self.store.update_message(
                stored.id, content=message.content.strip(), author_name=name, external_ids=[message.id]
            )
        await self.store.scenes.rename_human(thread.id, sent.author_id, name)
        _log.info("A proxy bot reposted message %d in scene %d as %s", sent.message_id, thread.id, message.id)

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        """A deleted scene thread: the scene is forgotten (the conversations cog drops its lines)."""
        if payload.thread_id in self.replies.claimed:
            self.active.discard(payload.thread_id)
            self.replies.claimed.discard(payload.thread_id)
            await self.store.scenes.delete(payload.thread_id)

    # -- a turn ----------------------------------------------------------------------------------

    async def _play(
        self,
        thread: discord.Thread,
        author: Author,
        content: str | None,
        source: discord.Interaction[Any] | discord.Message,
        *,
        external_id: int | None = None,
        nudge: str | None = None,
        replied_to: str | None = None,
        sent: Sent | None = None,
    ) -> bool:
        """Store ``content`` (if any) and let the characters answer; every failure is reported to ``source``.

        ``nudge`` names the character who speaks next; otherwise the characters ``content`` names, or the one
        whose line it replies to (``replied_to``, the name a webhook message was posted under), answer first.
        """
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        turn = Turn(self.stage, thread, nudge, owner=author.id, addressing=(content or "", replied_to))
        try:
            async with self.chat.respond(
                f"thread:{thread.id}",
                author,
                content,
                external_id=external_id,
                guild_id=thread.guild.id,
                channel_id=thread.id,
                dialogue=turn.dialogue,
            ) as reply:
                if sent is not None:
                    sent.stored.set()
                if reply is not None:
                    await turn.perform(reply)
        except (BusyError, PromptError, DiscordRefusal, GenerationError) as error:
            await report(source, error)
            return False
        except BotError as error:
            await report(source, error)
            return False
        finally:
            await turn.close()
            if task is not None:
                self._tasks.discard(task)
        return True

    # -- buttons ---------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_scene_button(self, interaction: discord.Interaction[Any], action: SceneAction, thread_id: int) -> None:
        """Stop or Regenerate the turn whose header's button was pressed (sent by the buttons as an event)."""
        if action == "stop":
            await self._stop(interaction, thread_id)
        else:
            await self._regenerate(interaction, thread_id)

    async def _stop(self, interaction: discord.Interaction[Any], thread_id: int) -> None:
        turn = self.stage.turns.get(thread_id)
        message = interaction.message
        if turn is None or turn.header is None or message is None or message.id != turn.header.id:
            await report(interaction, DiscordRefusal("That turn has already finished."))
            return
        if interaction.user.id != turn.owner and not interaction.permissions.manage_messages:
            refused = "Only the person who started this turn, or a moderator, can stop it."
            await report(interaction, DiscordRefusal(refused))
            return
        await interaction.response.defer()
        turn.stop()

    async def _regenerate(self, interaction: discord.Interaction[Any], thread_id: int) -> None:
        thread, message = interaction.channel, interaction.message
        if not isinstance(thread, discord.Thread) or thread.id != thread_id or message is None:
            await report(interaction, DiscordRefusal("This scene is no longer available."))
            return
        key = f"thread:{thread_id}"
        # Checked and marked before any await: a second press is refused, not queued.
        if thread_id in self._pressed or self.chat.replying(key):
            await report(interaction, DiscordRefusal("Wait for the current turn to finish (or press Stop)."))
            return
        self._pressed.add(thread_id)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        author = Author(interaction.user.id, interaction.user.display_name)
        turn = Turn(self.stage, thread, None, owner=author.id, header=message)
        try:
            await interaction.response.defer()
            target = await self.chat.find(message.id)
            if target is None:
                raise SceneError("This turn is no longer part of the scene.")
            # The same character opens the turn again: the prompt ends "ASSISTANT: Yoda:", never with two
            # ASSISTANT turns in a row (a nudged turn follows the model's own).
            turn.nudge = first_speaker(target.content)
            options = await self.chat.options_for(thread.guild.id, thread.id)
            async with self.chat.redo(key, author, target, "regenerate", options, dialogue=turn.dialogue) as reply:
                await turn.perform(reply)
        except BotError as error:
            await report(interaction, error)
        finally:
            await turn.close()
            self._pressed.discard(thread_id)
            if task is not None:
                self._tasks.discard(task)

    async def _summary(self, thread: discord.Thread, author: Author, stored: StoredScene) -> str:
        history = await self.chat.history_of(f"thread:{thread.id}")
        names = {h.user_id: h.name for h in stored.humans}
        transcript = [
            m.content if m.role == Role.ASSISTANT else f"{names.get(m.author_id or 0, m.author_name)}: {m.content}"
            for m in history
        ]
        cast = [c for c in [await self.store.characters.get_by_id(m.character_id) for m in stored.cast] if c]
        scene = Scene(tuple(scene_character(c) for c in cast), (), stored.setting, stored.rules)
        options = await self.chat.options_for(thread.guild.id, thread.id)
        async with self.chat.generate(author, [ChatMessage("user", summary_request(scene, transcript))], options) as r:
            return "".join([delta async for delta in r.deltas()]).strip()


async def _open_scene(
    channel: discord.TextChannel | discord.ForumChannel, text: str, files: list[discord.File], name: str
) -> tuple[discord.Thread, int]:
    """The scene's thread, opened from a message saying who starts it (in a forum: a post with that message).

    Returns the thread and that message's id (the message holds the cast's uploaded avatars).
    """
    if isinstance(channel, discord.ForumChannel):
        try:
            post = await channel.create_thread(name=name, content=text, files=files, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as error:
            raise refusal(error, "start a scene in this forum") from error
        return post.thread, post.message.id
    try:
        echo = await channel.send(text, files=files, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as error:
        raise refusal(error, "start a scene") from error
    try:
        thread = await echo.create_thread(name=name)
    except discord.HTTPException as error:
        with contextlib.suppress(discord.HTTPException):
            await echo.delete()
        raise refusal(error, "open a thread") from error
    return thread, echo.id


def _replied_to(message: discord.Message) -> str | None:
    """The name a replied-to character line was posted under (a webhook message), if the message is such a reply."""
    reference = message.reference
    if reference is None:
        return None
    replied = reference.resolved if isinstance(reference.resolved, discord.Message) else reference.cached_message
    return replied.author.name if replied is not None and replied.webhook_id is not None else None
