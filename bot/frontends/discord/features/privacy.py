"""Privacy in Discord: ``/forget-me`` (with a confirm button), ``/history export``, and retention.

``/forget-me`` answers privately with what would be deleted and two buttons; only the person who asked can press
them, once, within :data:`CONFIRM_SECONDS`. Confirming stops the replies they asked for that are still streaming,
waits until no reply runs in any conversation the deletion touches, and deletes (:func:`bot.core.privacy.forget_user`).
The bot cannot delete Discord's own copy of anyone's messages, and it leaves its posted replies, so the answers say
so. Retention (``[storage] retention_days``) purges idle conversations once at start and then every hour.
"""

from __future__ import annotations

import io
import logging
import re
import time
from typing import Any, Literal, cast

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.core.privacy import ExportFormat, HistoryExport, forget_user
from bot.errors import StoreError
from bot.frontends.discord.app.access import AlwaysAllowed
from bot.frontends.discord.services import DiscordBot, Services
from bot.frontends.discord.ui.feedback import NO_MENTIONS, DiscordRefusal, report
from bot.store import Purged, UserData

_log = logging.getLogger(__name__)

CONFIRM_SECONDS = 600
"""How long the /forget-me buttons work."""
ATTACHMENT_LIMIT = 8 * 2**20
"""Discord's upload limit for a server without boosts: an export larger than this is refused."""
RETENTION_HOURS = 1.0
DAY = 86_400.0
DISCORD_COPIES = (
    "Messages already on Discord stay: I can't delete Discord's copy of your messages, and my posted replies remain;"
    " delete them in Discord if you want them gone."
)
_NAMES_SHOWN = 10

ForgetAction = Literal["confirm", "cancel"]


class ForgetButton(
    AlwaysAllowed,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"airoboros:forget:(?P<action>confirm|cancel):(?P<user>\d+):(?P<issued>\d+)",
):
    """Confirm or Cancel under a /forget-me answer; the id says whose data and when it was asked."""

    def __init__(self, action: ForgetAction, user_id: int, issued: int) -> None:
        label, style = ("Delete my data", discord.ButtonStyle.danger) if action == "confirm" else ("Cancel", None)
        super().__init__(
            discord.ui.Button(
                label=label,
                style=style or discord.ButtonStyle.secondary,
                custom_id=f"airoboros:forget:{action}:{user_id}:{issued}",
            )
        )
        self.action: ForgetAction = action
        self.user_id = user_id
        self.issued = issued

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ForgetButton:
        return cls(cast(ForgetAction, match["action"]), int(match["user"]), int(match["issued"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch("forget_button", interaction, self.action, self.user_id, self.issued)


def forget_view(user_id: int, issued: int) -> discord.ui.View:
    """The two buttons of a /forget-me answer."""
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton("confirm", user_id, issued))
    view.add_item(ForgetButton("cancel", user_id, issued))
    return view


def _n(count: int, word: str) -> str:
    return f"**{count}** {word}{'' if count == 1 else 's'}"


def describe(data: UserData) -> list[str]:
    """One line per kind of data there is (nothing for the kinds with none)."""
    lines = []
    if data.messages:
        line = f"{_n(data.messages, 'message')}: yours and my replies to them"
        if data.conversations:
            line += f", with {_n(data.conversations, 'conversation')} only you took part in"
        lines.append(line)
    if data.sources:
        lines.append(f"{_n(data.sources, 'source')} you added")
    if data.riddles:
        lines.append(f"{_n(data.riddles, 'riddle')} you asked for")
    if data.quizzes:
        quizzes = "quiz" if data.quizzes == 1 else "quizzes"
        lines.append(f"**{data.quizzes}** {quizzes} you started, with everyone's answers")
    if data.quiz_answers:
        lines.append(_n(data.quiz_answers, "quiz answer"))
    if data.votes:
        lines.append(f"{_n(data.votes, 'vote')} on comparisons")
    if data.scenes:
        lines.append(f"your place in {_n(data.scenes, 'scene')}")
    if data.scenes_started:
        stay = "it stays" if data.scenes_started == 1 else "they stay"
        lines.append(f"the setting and rules of {_n(data.scenes_started, 'scene')} you started ({stay} for the others)")
    if data.characters:
        names = ", ".join(data.characters[:_NAMES_SHOWN])
        if len(data.characters) > _NAMES_SHOWN:
            names += f" and {len(data.characters) - _NAMES_SHOWN} more"
        count = _n(len(data.characters), "character")
        lines.append(f"{count} you created ({names}): deleted for everyone, and from the scenes they are in")
    return [f"- {line}" for line in lines]


def summary_text(data: UserData) -> str:
    """The /forget-me answer before confirming."""
    return "\n".join(
        [
            "This deletes everything I have stored about you:",
            *describe(data),
            "",
            DISCORD_COPIES,
            f"This cannot be undone. Press **Delete my data** within {CONFIRM_SECONDS // 60} minutes to go ahead.",
        ]
    )


def result_text(data: UserData) -> str:
    """The /forget-me answer once the data is deleted."""
    if data.empty:
        return f"Done: there was nothing left to delete. {DISCORD_COPIES}"
    return "\n".join(["Done. I deleted:", *describe(data), "", DISCORD_COPIES])


def conversation_key(channel: object) -> str | None:
    """The store key a conversation in ``channel`` would have: a thread's or a DM's (None elsewhere)."""
    if isinstance(channel, discord.Thread):
        return f"thread:{channel.id}"
    if isinstance(channel, discord.DMChannel):
        return f"dm:{channel.id}"
    return None


class Privacy(commands.Cog):
    """Your data: delete it all, export a conversation; old conversations expire."""

    history = app_commands.Group(name="history", description="The stored history of a conversation")

    def __init__(self, bot: DiscordBot, services: Services) -> None:
        self.bot = bot
        self.chat = services.chat
        self.replies = services.replies
        self.retention_days = self.chat.engine.config.storage.retention_days
        """``[storage] retention_days``: 0 keeps conversations forever."""
        self._pressed: dict[int, ForgetAction] = {}
        """/forget-me answers (by message id) whose button was pressed: a second press is refused."""
        self._forgetting: set[int] = set()
        """People whose data is being deleted right now."""

    async def cog_load(self) -> None:
        """Start retention: a purge now, then every hour (only when ``retention_days`` is set)."""
        if self.retention_days > 0:
            self._retention.start()

    async def cog_unload(self) -> None:
        """Stop retention; a purge in progress finishes its transaction first (the store rolls back otherwise)."""
        self._retention.cancel()

    @tasks.loop(hours=RETENTION_HOURS)
    async def _retention(self) -> None:
        await self.purge()

    async def purge(self) -> Purged | None:
        """Delete the conversations idle for longer than ``retention_days``; one log line says what went."""
        try:
            purged = await self.chat.store.privacy.purge_older_than(time.time() - self.retention_days * DAY)
        except StoreError:
            # The loop must go on: the next hour may find the database writable again.
            _log.warning("Retention could not delete old conversations", exc_info=True)
            return None
        _log.info(
            "Retention (%d days): deleted %d conversations, %d messages, %d scenes",
            self.retention_days,
            purged.conversations,
            purged.messages,
            purged.scenes,
        )
        return purged

    # -- /forget-me ------------------------------------------------------------------------------

    @app_commands.command(name="forget-me")
    async def forget_me(self, interaction: discord.Interaction[Any]) -> None:
        """Delete everything the bot has stored about you (asks to confirm first)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await self.chat.store.privacy.summary(interaction.user.id)
        if data.empty:
            await interaction.edit_original_response(content=f"I have nothing stored about you. {DISCORD_COPIES}")
            return
        await interaction.edit_original_response(
            content=summary_text(data),
            view=forget_view(interaction.user.id, int(time.time())),
            allowed_mentions=NO_MENTIONS,
        )

    @commands.Cog.listener()
    async def on_forget_button(
        self, interaction: discord.Interaction[Any], action: ForgetAction, user_id: int, issued: int
    ) -> None:
        """Confirm or Cancel pressed under a /forget-me answer (sent by the buttons as an event)."""
        message = interaction.message
        assert message is not None
        try:
            if interaction.user.id != user_id:
                raise DiscordRefusal("Only the person who ran /forget-me can confirm or cancel it.")
            done = self._pressed.get(message.id)
            if done == "confirm":
                raise DiscordRefusal("Already confirmed: your data is deleted (or being deleted right now).")
            if done == "cancel":
                raise DiscordRefusal("This was cancelled; run /forget-me again to delete your data.")
            if time.time() - issued > CONFIRM_SECONDS:
                raise DiscordRefusal("This confirmation has expired; run /forget-me again.")
            if action == "confirm" and user_id in self._forgetting:
                raise DiscordRefusal("Your data is already being deleted.")
        except DiscordRefusal as error:
            await report(interaction, error)
            return
        self._pressed[message.id] = action  # before any await: a second press is refused from here on
        await interaction.response.defer()
        if action == "cancel":
            await interaction.edit_original_response(content="Cancelled: nothing was deleted.", view=None)
            return
        self._forgetting.add(user_id)
        try:
            await interaction.edit_original_response(content="⏳ Deleting your data…", view=None)
            self.replies.stop_asked_by(user_id)  # their replies in flight end now; others' are waited for
            forgotten = await forget_user(self.chat, user_id)
        except StoreError as error:
            del self._pressed[message.id]  # nothing was deleted: let them try again
            await interaction.edit_original_response(content=f"⚠️ {error} Nothing was deleted; try again.")
            return
        finally:
            self._forgetting.discard(user_id)
        await interaction.edit_original_response(content=result_text(forgotten), allowed_mentions=NO_MENTIONS)

    # -- /history export -------------------------------------------------------------------------

    @history.command(name="export")
    @app_commands.describe(format="json (every field) or markdown (easy to read); json if not given")
    async def export(self, interaction: discord.Interaction[Any], format: ExportFormat = "json") -> None:
        """This conversation's stored history as a file, only for you."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        key = conversation_key(interaction.channel)
        if key is None:
            raise DiscordRefusal("Use /history export inside one of my conversation threads or in a DM.")
        exported = await HistoryExport(self.chat.store, max_bytes=ATTACHMENT_LIMIT).export(key, format, now=time.time())
        await interaction.edit_original_response(
            content=f"The stored history of this conversation: {_n(exported.messages, 'message')}.",
            attachments=[discord.File(io.BytesIO(exported.data), exported.filename)],
        )


async def setup(bot: DiscordBot, services: Services) -> None:
    """``/forget-me`` (with its confirm button), ``/history export`` and the retention purge."""
    bot.add_dynamic_items(ForgetButton)
    await bot.add_cog(Privacy(bot, services))
