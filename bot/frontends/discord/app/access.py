"""Access control: one gate that every message, command and button passes (``[access]`` in the config).

:class:`Access` decides from the person (their id and roles), the server and the channel (a thread counts as
its parent channel) whether the bot serves them, and counts each person's requests that reach the model in a
sliding 60-second window. The rules are wired in three places, so no feature can forget them:

- slash commands, context menus and autocomplete: :class:`AccessTree`, the bot's command tree, whose
  ``interaction_check`` runs before any command;
- persistent buttons: each inherits :class:`AccessChecked`, whose ``interaction_check`` runs before the
  button's callback (:meth:`AiroborosBot.add_dynamic_items` refuses a button class without it). Forms (modals)
  and short-lived views only ever open in answer to a command or button that passed the gate;
- messages: the ``on_message`` listeners call :meth:`Access.serves` (silence when refused: a channel is never
  spammed) and, before a message reaches the model, :meth:`Access.admit` (one short reply per wait); an edited
  message passes :meth:`Access.serves` before the history takes its new text.

The rate limit is counted where the model is asked, not at the gate: the client makes :class:`Access` the meter
of every variant's scheduler (:class:`~bot.inference.scheduler.Meter`), so each request that reaches the model
counts once, whatever asked for it (a ``/compare`` of four variants counts four, a riddle asked again counts two,
a guess the model judges counts one). The gate only looks: a command, button or message from someone already at
the limit is refused before anything is deferred, stored or typed.

Commands and buttons that are refused get a short ephemeral answer. Nothing here reads the database or
awaits before deciding, so a refusal is also the interaction's acknowledgement. :class:`AccessGuard` leaves
servers that are not in ``allowed_guilds``, at start and when the bot is added to one.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import AccessConfig
from bot.errors import BotError, BusyError
from bot.frontends.discord.ui.feedback import DiscordRefusal, report

if TYPE_CHECKING:
    from bot.frontends.discord.services import DiscordBot  # only the type: services imports this module

_log = logging.getLogger(__name__)

RATE_WINDOW = 60.0
"""Seconds over which ``requests_per_minute`` is counted."""

MODEL_COMMANDS = frozenset(
    {
        "chat",
        "ask",
        "code",
        "joke",
        "riddle",
        "quiz start",
        "compare run",
        "scene start",
        "scene nudge",
        "scene end",
        "Ask about this message",
    }
)
"""Commands (qualified names) whose use reaches the model: refused at once when the person is at their rate limit
(each model call they make is then counted by the scheduler's meter)."""

ALWAYS_ALLOWED = frozenset({"forget-me"})
"""Commands no rule refuses: deleting one's own data never depends on being allowed to use the bot."""

BLOCKED = "You can't use this bot."
NO_DMS = "I don't answer in DMs here; talk to me in a server."
OTHER_SERVER = "I don't serve this server."
OTHER_CHANNEL = "I don't answer in this channel."
NO_ROLE = "You need one of the roles allowed to use this bot."
SCENES_AGE_RESTRICTED = "Scenes can only start in age-restricted channels here."

PRUNE_EVERY = 1024
"""Hits (and remembered refusals) between two clean-ups of people no longer active: memory stays bounded."""


class RateLimited(BusyError):
    """A person sent more requests than ``requests_per_minute`` allows; says when to try again."""

    def __init__(self, wait: float, *, repeated: bool) -> None:
        self.wait = wait
        self.repeated = repeated
        """True when the person was already told during this wait (messages then get silence)."""
        super().__init__(f"You're sending requests too fast; try again in {max(1, math.ceil(wait))} s.")


class SlidingWindow:
    """At most ``limit`` hits per key in any ``window`` seconds (a log of each key's recent hits).

    A hand-written class rather than the ``limits`` package: the bot needs only in-memory counting per user and
    the time until the oldest hit leaves the window, and ``limits`` is not a dependency of this project.
    """

    def __init__(self, limit: int, window: float = RATE_WINDOW, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[int, deque[float]] = {}
        self._since_pruned = 0

    def hit(self, key: int) -> float:
        """Count a hit for ``key`` if it fits: 0.0; else (nothing counted) the seconds until one would fit."""
        now = self._clock()
        self._since_pruned += 1
        if self._since_pruned >= PRUNE_EVERY:
            self._since_pruned = 0
            self.forget_idle()
        wait = self.wait(key)
        if wait <= 0:
            self._hits.setdefault(key, deque()).append(now)
        return wait

    def wait(self, key: int) -> float:
        """The seconds until a hit for ``key`` would fit (0.0: now); counts nothing."""
        now = self._clock()
        hits = self._hits.get(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits[0] + self.window - now if len(hits) >= self.limit else 0.0

    def refund(self, key: int) -> None:
        """Take back ``key``'s latest hit (one counted for something that did not happen after all)."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()

    def forget_idle(self) -> None:
        """Drop the keys with no hit in the window (keeps memory bounded by the people active lately)."""
        now = self._clock()
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window]:
            del self._hits[key]


class Access:
    """The one gate: who the bot serves where, and how often."""

    def __init__(self, config: AccessConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._allowed_guilds = frozenset(config.allowed_guilds)
        self._allowed_channels = frozenset(config.allowed_channels)
        self._blocked = frozenset(config.blocked_users)
        self._roles = frozenset(config.allowed_roles)
        self.window = SlidingWindow(config.requests_per_minute, clock=clock) if config.requests_per_minute else None
        self._told_until: dict[int, float] = {}

    # -- the rules -------------------------------------------------------------------------

    def serves_guild(self, guild_id: int) -> bool:
        """Whether the bot stays in this server."""
        return not self._allowed_guilds or guild_id in self._allowed_guilds

    def refusal(
        self, user_id: int, role_ids: Collection[int], guild_id: int | None, channel_id: int | None
    ) -> str | None:
        """Why the bot does not serve this person here (``channel_id``: a thread's parent), or None if it does."""
        if user_id in self._blocked:
            return BLOCKED
        if guild_id is None:
            return None if self.config.allow_dms else NO_DMS
        if not self.serves_guild(guild_id):
            return OTHER_SERVER
        if self._allowed_channels and channel_id not in self._allowed_channels:
            return OTHER_CHANNEL
        if self._roles and self._roles.isdisjoint(role_ids):
            return NO_ROLE
        return None

    def rate(self, user_id: int) -> RateLimited | None:
        """Count a request that reaches the model; :class:`RateLimited` (nothing counted) past the limit."""
        return None if self.window is None else self._limited(user_id, self.window.hit(user_id))

    def check_rate(self, user_id: int) -> RateLimited | None:
        """:class:`RateLimited` if a request now would be past the limit, else None; counts nothing (the gate)."""
        return None if self.window is None else self._limited(user_id, self.window.wait(user_id))

    def count(self, user: str) -> None:
        """The scheduler's meter (``user``: a Discord id as text): count a request, or raise :class:`RateLimited`."""
        limited = self.rate(int(user))
        if limited is not None:
            raise limited

    def refund(self, user: str) -> None:
        """The scheduler's meter: a counted request was released before it reached the model."""
        if self.window is not None:
            self.window.refund(int(user))

    def _limited(self, user_id: int, wait: float) -> RateLimited | None:
        if wait <= 0:
            return None
        now = self._clock()
        repeated = self._told_until.get(user_id, 0.0) > now
        if not repeated:
            self._told_until[user_id] = now + wait
            if len(self._told_until) > PRUNE_EVERY:  # expired entries mean nothing: keep the map small
                self._told_until = {k: v for k, v in self._told_until.items() if v > now}
        return RateLimited(wait, repeated=repeated)

    # -- Discord objects -------------------------------------------------------------------

    def serves(self, message: discord.Message) -> bool:
        """Whether the bot may answer this message at all (the caller stays silent when not)."""
        guild_id = message.guild.id if message.guild is not None else None
        refused = self.refusal(message.author.id, _role_ids(message.author), guild_id, _rule_channel(message.channel))
        if refused is not None:
            _log.debug("Not serving message %d: %s", message.id, refused)
        return refused is None

    def admit(self, message: discord.Message, spawn: Callable[[Awaitable[None]], None]) -> bool:
        """Whether a message may go on to the model (the reply it gets is what counts); past the limit the person gets
        one short reply per wait (``spawn`` runs it in the background), then silence, so a thread is never flooded
        with refusals."""
        limited = self.check_rate(message.author.id)
        if limited is None:
            return True
        if not limited.repeated:
            spawn(report(message, limited))
        return False

    def interaction_refusal(self, interaction: discord.Interaction[Any], *, command: str | None = None) -> str | None:
        """Why this interaction is refused (the access rules, then the scene rule), or None."""
        user = interaction.user
        refused = self.refusal(user.id, _role_ids(user), interaction.guild_id, _rule_channel(interaction.channel))
        if refused is None and command == "scene start" and self.config.scenes_age_restricted:
            is_nsfw = getattr(interaction.channel, "is_nsfw", None)
            if not (callable(is_nsfw) and is_nsfw()):
                refused = SCENES_AGE_RESTRICTED
        return refused

    async def check_interaction(
        self, interaction: discord.Interaction[Any], *, command: str | None = None, costly: bool = False
    ) -> bool:
        """The gate for a command or button: True to go on; else the person was told why (privately)."""
        if command in ALWAYS_ALLOWED:
            return True
        refused: BotError | None = None
        text = self.interaction_refusal(interaction, command=command)
        if text is not None:
            refused = DiscordRefusal(text)
        elif costly:
            refused = self.check_rate(interaction.user.id)
        if refused is None:
            return True
        _log.info("Refused %s for user %d: %s", command or "a button", interaction.user.id, refused)
        if interaction.type is not discord.InteractionType.autocomplete:  # autocomplete cannot show a message
            await report(interaction, refused)
        return False


class AccessChecked:
    """Mixin for every persistent button (put it before ``discord.ui.DynamicItem``): the press passes the gate.

    ``discord.ui.DynamicItem.interaction_check`` runs before the button's callback; a refused press gets a short
    private answer. :meth:`AiroborosBot.add_dynamic_items` refuses a button class without this mixin.
    """

    def reaches_model(self) -> bool:
        """Whether a press may ask the model for text (refused at once when the person is at their rate limit)."""
        return False

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        access: Access | None = getattr(interaction.client, "access", None)
        return access is None or await access.check_interaction(interaction, costly=self.reaches_model())


class AlwaysAllowed(AccessChecked):
    """Mixin for the buttons of :data:`ALWAYS_ALLOWED` commands (``/forget-me``'s confirm): no rule refuses them."""

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return True


class AccessTree(app_commands.CommandTree[Any]):
    """The bot's command tree: every command passes :class:`Access` before it runs."""

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        access: Access | None = getattr(self.client, "access", None)
        if access is None:
            return True
        command = interaction.command
        name = getattr(command, "qualified_name", None) or getattr(command, "name", None)
        costly = interaction.type is discord.InteractionType.application_command and name in MODEL_COMMANDS
        return await access.check_interaction(interaction, command=name, costly=costly)


class AccessGuard(commands.Cog):
    """Leaves the servers the config does not allow: those it is in at start, and any it is added to."""

    def __init__(self, bot: DiscordBot, access: Access) -> None:
        self.bot = bot
        self.access = access

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """At start (and after a reconnect), leave every server that is not allowed."""
        for guild in list(self.bot.guilds):
            await self._leave_unless_allowed(guild)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        """Someone added the bot to a server: leave at once unless it is allowed."""
        await self._leave_unless_allowed(guild)

    async def _leave_unless_allowed(self, guild: discord.Guild) -> None:
        if self.access.serves_guild(guild.id):
            return
        _log.warning("Leaving server %s (%d): it is not in [access] allowed_guilds", guild.name, guild.id)
        try:
            await guild.leave()
        except discord.HTTPException:
            _log.warning("Could not leave server %d", guild.id, exc_info=True)


def _role_ids(user: discord.abc.User) -> list[int]:
    """A member's role ids (@everyone included, as the guild's id); a user outside a server has none."""
    return [role.id for role in getattr(user, "roles", ())]


def _rule_channel(channel: object) -> int | None:
    """The channel the channel rules look at: a thread's parent, else the channel itself."""
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return getattr(channel, "id", None)
