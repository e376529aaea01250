"""Channel and server settings: what may be set, and which value applies where.

Settings are stored per channel (a thread and a DM count as channels) and per guild
(its defaults), ``None`` meaning "inherit". The value that applies in a place is the
first one set along::

    the thread's own > its parent channel's > the guild's > the config's [generation]

A value that no longer makes sense (a model variant that is not loaded any more, a
``max_new_tokens`` beyond what the operator now allows) is skipped or capped when
resolved, so a config change never breaks a channel.

Limits: temperature 0-2; top_p above 0 and at most 1; max_new_tokens from 1 to the
smaller of the operator's ``[generation] max_new_tokens`` and what the model's window
leaves after the system prompt and :data:`PROMPT_ROOM` tokens for the conversation; a
system prompt of at most :data:`SYSTEM_PROMPT_LIMIT` characters (blank means "inherit");
a variant must be one of the loaded ones. A bad value raises :class:`SettingsError`
and nothing is stored.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot.config import GenerationConfig
from bot.core.engine import Engine, Variant
from bot.errors import BotError
from bot.store import SETTING_NAMES, Scope, Store, StoredSettings

SYSTEM_PROMPT_LIMIT = 1000
"""Characters a stored system prompt may have (it fits one embed field, and is kept whole in every prompt)."""

PROMPT_ROOM = 256
"""Tokens of the window kept for the conversation itself, beyond the system prompt and the reply."""

_BUDGET = frozenset({"max_new_tokens", "system_prompt", "variant"})
"""The settings whose combination must fit the model's window."""


class SettingsError(BotError):
    """A setting's value is out of range or unknown; nothing was stored."""


class Source(enum.StrEnum):
    """Where the value that applies comes from."""

    THREAD = "thread"
    CHANNEL = "channel"
    SERVER = "server"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a request is made: a guild (None in DMs), a channel, and for a thread the channel it sits in."""

    guild_id: int | None
    channel_id: int | None
    parent_id: int | None = None

    def layers(self, scope: Scope = Scope.CHANNEL) -> list[tuple[Source, Scope, int]]:
        """The stored rows that apply, most specific first; for ``scope`` guild only the guild's."""
        layers: list[tuple[Source, Scope, int]] = []
        if scope == Scope.CHANNEL and self.channel_id is not None:
            own = Source.THREAD if self.parent_id is not None else Source.CHANNEL
            layers.append((own, Scope.CHANNEL, self.channel_id))
            if self.parent_id is not None:
                layers.append((Source.CHANNEL, Scope.CHANNEL, self.parent_id))
        if self.guild_id is not None:
            layers.append((Source.SERVER, Scope.GUILD, self.guild_id))
        return layers

    def target(self, scope: Scope) -> int:
        """The id whose row ``scope`` changes here."""
        place_id = self.guild_id if scope == Scope.GUILD else self.channel_id
        if place_id is None:
            where = "in a server" if scope == Scope.GUILD else "in a channel"
            raise SettingsError(f"Those settings can only be changed {where}.")
        return place_id


@dataclass(frozen=True, slots=True)
class Effective:
    """The settings that apply in a place."""

    overrides: StoredSettings
    """The values set by a channel or the guild; ``None`` where the config's default applies."""
    values: StoredSettings
    """Every value that applies, defaults filled in (``system_prompt`` None: the model's own, if any)."""
    sources: Mapping[str, Source]
    """Where each value comes from."""


class ChannelSettings:
    """Validates, stores and resolves settings against the loaded model variants and the config."""

    def __init__(self, store: Store, engine: Engine, generation: GenerationConfig) -> None:
        self.store = store
        self.engine = engine
        self.generation = generation

    # -- reading ---------------------------------------------------------------------------

    async def effective(self, place: Place, scope: Scope = Scope.CHANNEL) -> Effective:
        """The settings that apply at ``place`` (with ``scope`` guild: the guild's defaults alone)."""
        layers = place.layers(scope)
        rows = await self.store.settings.get_many([(s, i) for _, s, i in layers])
        return self.resolve([(source, row) for (source, _, _), row in zip(layers, rows, strict=True)])

    def resolve(self, layers: Sequence[tuple[Source, StoredSettings]], *, cap: bool = True) -> Effective:
        """The first usable value of each setting along ``layers`` (most specific first), else the default.

        With ``cap``, a ``max_new_tokens`` (the default's included) beyond what the variant's window and the
        operator allow is lowered to that limit, so a request never fails for a setting it did not choose.
        """
        found: dict[str, Any] = {}
        sources: dict[str, Source] = {}
        for name in SETTING_NAMES:
            for source, row in layers:
                value = getattr(row, name)
                if value is None or (name == "variant" and value not in self.engine.names):
                    continue  # unset, or a variant no longer loaded: the next layer decides
                found[name], sources[name] = value, source
                break
            else:
                sources[name] = Source.DEFAULT
        overrides = StoredSettings(**found)
        variant = self.engine.variant(overrides.variant)
        limit = max(self.max_new_tokens_limit(variant), 1)
        if cap and (overrides.max_new_tokens or self.generation.max_new_tokens) > limit:
            overrides = replace(overrides, max_new_tokens=limit)
        return Effective(overrides, self._filled(overrides, variant), sources)

    def _filled(self, overrides: StoredSettings, variant: Variant) -> StoredSettings:
        g = self.generation
        return StoredSettings(
            temperature=g.temperature if overrides.temperature is None else overrides.temperature,
            top_p=g.top_p if overrides.top_p is None else overrides.top_p,
            max_new_tokens=overrides.max_new_tokens or g.max_new_tokens,
            system_prompt=overrides.system_prompt or default_system(variant),
            history=g.history if overrides.history is None else overrides.history,
            variant=variant.name,
        )

    def max_new_tokens_limit(self, variant: Variant, system: str | None = None) -> int:
        """The most new tokens a reply may ask for with ``variant`` and the system prompt ``system``.

        Without ``system`` only the window and the operator's cap count (a cheap check used on every request).
        """
        window = variant.builder.context_length - PROMPT_ROOM
        if system is not None:
            window -= len(variant.builder.tokenizer.encode_plain(system))
        return min(self.generation.max_new_tokens, window)

    # -- changing --------------------------------------------------------------------------

    def check(self, changes: Mapping[str, object]) -> dict[str, Any]:
        """``changes`` with each value checked on its own and normalized; :class:`SettingsError` if one is bad."""
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in SETTING_NAMES:
                raise SettingsError(f"There is no setting called {name!r}.")
            checked[name] = self._check_one(name, value)
        return checked

    def _check_one(self, name: str, value: object) -> object:
        if value is None:
            return None
        if name == "temperature":
            number = _number(value, name)
            if not 0 <= number <= 2:
                raise SettingsError(f"temperature must be between 0 and 2 (0 picks the likeliest word); got {value}.")
            return number
        if name == "top_p":
            number = _number(value, name)
            if not 0 < number <= 1:
                raise SettingsError(f"top_p must be above 0 and at most 1 (1 turns it off); got {value}.")
            return number
        if name == "max_new_tokens":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(f"max_new_tokens must be a whole number of at least 1; got {value}.")
            return value
        if name == "system_prompt":
            text = str(value).strip()
            if len(text) > SYSTEM_PROMPT_LIMIT:
                raise SettingsError(
                    f"The system prompt is {len(text)} characters long; the limit is {SYSTEM_PROMPT_LIMIT}."
                )
            return text or None  # blank: back to what this place inherits
        if name == "history":
            if not isinstance(value, bool):
                raise SettingsError(f"history must be on or off; got {value}.")
            return value
        if value not in self.engine.names:  # variant
            raise SettingsError(
                f"There is no loaded model variant called {value!r}; choose one of: {', '.join(self.engine.names)}."
            )
        return value

    async def change(self, place: Place, scope: Scope, changes: Mapping[str, object]) -> Effective:
        """Check ``changes`` (``None`` values clear a setting) and store them for ``scope`` at ``place``.

        Returns the settings that now apply at ``place`` (for ``scope`` guild: the guild's defaults). Raises
        :class:`SettingsError`, storing nothing, if a value is out of range or the result would not fit the window.
        """
        checked = self.check(changes)
        target = place.target(scope)
        if _BUDGET & checked.keys():
            layers = place.layers(scope)
            rows = await self.store.settings.get_many([(s, i) for _, s, i in layers])
            after = [
                (source, replace(row, **checked) if (s, i) == (scope, target) else row)
                for (source, s, i), row in zip(layers, rows, strict=True)
            ]
            self._check_budget(self.resolve(after, cap=False), checked)
        await self.store.settings.update(scope, target, checked, guild_id=place.guild_id)
        return await self.effective(place, scope)

    def _check_budget(self, effective: Effective, changed: Mapping[str, object]) -> None:
        """The reply and the system prompt must leave :data:`PROMPT_ROOM` tokens of the window for the conversation."""
        values = effective.values
        assert values.max_new_tokens is not None and values.variant is not None
        variant = self.engine.variant(values.variant)
        limit = self.max_new_tokens_limit(variant, values.system_prompt or "")
        wanted = values.max_new_tokens
        if wanted <= limit or (effective.sources["max_new_tokens"] == Source.DEFAULT and limit >= 1):
            return  # the default is capped to fit when resolved
        window = variant.builder.context_length
        if limit < 1:
            raise SettingsError(
                f"That system prompt is too long for the {variant.name} model: with it, its {window}-token window "
                "has no room left for the conversation and a reply."
            )
        if "max_new_tokens" in changed:
            raise SettingsError(
                f"max_new_tokens must be between 1 and {limit} here: that is what the {variant.name} model's "
                f"{window}-token window (minus the system prompt and room for the conversation) and the "
                f"bot's configured maximum of {self.generation.max_new_tokens} allow."
            )
        raise SettingsError(
            f"With that change the {variant.name} model can write at most {limit} new tokens, but max_new_tokens "
            f"is {wanted} here; lower max_new_tokens as well."
        )

    async def reset(self, place: Place, scope: Scope, name: str | None = None) -> Effective:
        """Forget one setting (``name``) or all of them for ``scope`` at ``place``; returns what applies now
        (as :meth:`change` does)."""
        target = place.target(scope)
        if name is None:
            await self.store.settings.reset(scope, target)
        else:
            await self.store.settings.update(scope, target, self.check({name: None}))
        return await self.effective(place, scope)


def default_system(variant: Variant) -> str | None:
    """The system prompt a variant uses when none is set (None: a chat template's own, or none)."""
    system = getattr(variant.builder.format, "default_system", None)
    return system if isinstance(system, str) and system else None


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SettingsError(f"{name} must be a number; got {value}.")
    return float(value)
