"""Channel and server settings: the ranges, the window budget, and which value applies where."""

from __future__ import annotations

import pytest

from bot.config import Config, GenerationConfig, ModelConfig
from bot.core.chat import ChatService
from bot.core.chat_prompts import ChatOptions
from bot.core.engine import Engine
from bot.core.settings import PROMPT_ROOM, SYSTEM_PROMPT_LIMIT, ChannelSettings, Place, SettingsError, Source
from bot.inference.tokenizer import HFTokenizer
from bot.store import Scope, Store, StoredSettings
from tests.doubles import ScriptedBackend

GUILD, CHANNEL, THREAD = 1, 10, 100
IN_CHANNEL = Place(GUILD, CHANNEL)
IN_THREAD = Place(GUILD, THREAD, parent_id=CHANNEL)
SMALL_WINDOW = 600
"""The "small" variant's window: it leaves SMALL_WINDOW - PROMPT_ROOM tokens for a reply, below the cap of 512."""


@pytest.fixture
def engine(embedded_tokenizer: tuple[HFTokenizer, int]) -> Engine:
    """Two airoboros-format variants: "big" (the default, 2048 tokens) and "small" (600 tokens)."""
    config = Config(models=[ModelConfig(name=name, prompt_format="airoboros") for name in ("big", "small")])
    tokenizer = embedded_tokenizer[0]
    return Engine(
        config,
        {
            "big": Engine._wrap(config.models[0], ScriptedBackend(tokenizer, name="big"), config),
            "small": Engine._wrap(
                config.models[1], ScriptedBackend(tokenizer, name="small", context_length=SMALL_WINDOW), config
            ),
        },
    )


@pytest.fixture
def settings(store: Store, engine: Engine) -> ChannelSettings:
    return ChannelSettings(store, engine, engine.config.generation)


async def stored(store: Store, scope: Scope = Scope.CHANNEL, place_id: int = CHANNEL) -> StoredSettings:
    return await store.settings.get(scope, place_id)


# -- each value on its own -------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.5, 2])
def test_temperature_from_0_to_2_is_accepted(settings: ChannelSettings, value: float) -> None:
    """Both ends of the temperature range are allowed."""
    assert settings.check({"temperature": value}) == {"temperature": float(value)}


@pytest.mark.parametrize("value", [-0.1, 2.01, float("nan")])
def test_temperature_outside_0_to_2_is_refused(settings: ChannelSettings, value: float) -> None:
    """A temperature outside 0-2 gets an error naming the range."""
    with pytest.raises(SettingsError, match="temperature must be"):
        settings.check({"temperature": value})


@pytest.mark.parametrize("value", [0.01, 1])
def test_top_p_above_0_up_to_1_is_accepted(settings: ChannelSettings, value: float) -> None:
    """top_p may be any value in (0, 1]."""
    assert settings.check({"top_p": value}) == {"top_p": float(value)}


@pytest.mark.parametrize("value", [0, -0.5, 1.01])
def test_top_p_of_0_or_above_1_is_refused(settings: ChannelSettings, value: float) -> None:
    """top_p 0 would allow no token at all; above 1 means nothing."""
    with pytest.raises(SettingsError, match="top_p must be above 0 and at most 1"):
        settings.check({"top_p": value})


def test_max_new_tokens_below_1_is_refused(settings: ChannelSettings) -> None:
    """A reply of no tokens is not a reply."""
    with pytest.raises(SettingsError, match="max_new_tokens must be a whole number of at least 1"):
        settings.check({"max_new_tokens": 0})


def test_a_too_long_system_prompt_is_refused(settings: ChannelSettings) -> None:
    """A system prompt over the limit is refused with its length and the limit."""
    with pytest.raises(SettingsError, match=f"{SYSTEM_PROMPT_LIMIT + 1} characters long; the limit is"):
        settings.check({"system_prompt": "x" * (SYSTEM_PROMPT_LIMIT + 1)})


def test_a_blank_system_prompt_means_inherit(settings: ChannelSettings) -> None:
    """An empty system prompt clears this place's own, so the inherited one (or the default) applies."""
    assert settings.check({"system_prompt": "   "}) == {"system_prompt": None}


def test_an_unknown_variant_is_refused_with_the_loaded_ones(settings: ChannelSettings) -> None:
    """Only a loaded variant can be chosen; the error lists them."""
    with pytest.raises(SettingsError, match="no loaded model variant called 'huge'; choose one of: big, small"):
        settings.check({"variant": "huge"})


# -- the window budget -----------------------------------------------------------------------


async def test_max_new_tokens_above_the_configured_maximum_is_refused(settings: ChannelSettings, store: Store) -> None:
    """A channel cannot ask for longer replies than the operator's [generation] max_new_tokens."""
    with pytest.raises(SettingsError, match="between 1 and 512 here"):
        await settings.change(IN_CHANNEL, Scope.CHANNEL, {"max_new_tokens": 513})
    assert await stored(store) == StoredSettings()


async def test_max_new_tokens_must_leave_room_for_the_prompt_in_the_window(
    settings: ChannelSettings, store: Store
) -> None:
    """With a small window the limit is the window minus the system prompt and room for the conversation."""
    await settings.change(IN_CHANNEL, Scope.CHANNEL, {"variant": "small", "system_prompt": "Be brief."})
    system_tokens = len(settings.engine.variant("small").builder.tokenizer.encode_plain("Be brief."))
    limit = SMALL_WINDOW - PROMPT_ROOM - system_tokens
    with pytest.raises(SettingsError, match=f"between 1 and {limit} here"):
        await settings.change(IN_CHANNEL, Scope.CHANNEL, {"max_new_tokens": limit + 1})
    await settings.change(IN_CHANNEL, Scope.CHANNEL, {"max_new_tokens": limit})
    assert (await stored(store)).max_new_tokens == limit


async def test_switching_to_a_smaller_model_with_a_large_max_new_tokens_is_refused(
    settings: ChannelSettings, store: Store
) -> None:
    """A variant whose window cannot hold the max_new_tokens in force asks to lower it; nothing is stored."""
    await settings.change(IN_CHANNEL, Scope.CHANNEL, {"max_new_tokens": 500})
    with pytest.raises(SettingsError, match="lower max_new_tokens as well"):
        await settings.change(IN_CHANNEL, Scope.CHANNEL, {"variant": "small"})
    assert await stored(store) == StoredSettings(max_new_tokens=500)


async def test_one_bad_value_stores_none_of_the_change(settings: ChannelSettings, store: Store) -> None:
    """A change with a good and a bad value is refused whole."""
    with pytest.raises(SettingsError):
        await settings.change(IN_CHANNEL, Scope.CHANNEL, {"temperature": 1.0, "top_p": 0})
    assert await stored(store) == StoredSettings()


async def test_guild_settings_need_a_guild(settings: ChannelSettings) -> None:
    """In a DM there is no server to set defaults for."""
    with pytest.raises(SettingsError, match="only be changed in a server"):
        await settings.change(Place(None, 55), Scope.GUILD, {"temperature": 1.0})


# -- which value applies ---------------------------------------------------------------------


async def test_with_nothing_set_the_config_defaults_apply(settings: ChannelSettings) -> None:
    """No rows: every value is the default, and says so."""
    effective = await settings.effective(IN_CHANNEL)
    generation = GenerationConfig()
    assert effective.overrides == StoredSettings()
    assert effective.values == StoredSettings(
        temperature=generation.temperature,
        top_p=generation.top_p,
        max_new_tokens=generation.max_new_tokens,
        system_prompt=generation.system_prompt,
        history=generation.history,
        variant="big",
    )
    assert set(effective.sources.values()) == {Source.DEFAULT}


async def test_the_channel_wins_over_the_guild_which_wins_over_the_defaults(settings: ChannelSettings) -> None:
    """Each value comes from the most specific place that sets it."""
    await settings.change(IN_CHANNEL, Scope.GUILD, {"temperature": 1.5, "top_p": 0.8})
    await settings.change(IN_CHANNEL, Scope.CHANNEL, {"temperature": 0.2})
    effective = await settings.effective(IN_CHANNEL)
    assert (effective.values.temperature, effective.sources["temperature"]) == (0.2, Source.CHANNEL)
    assert (effective.values.top_p, effective.sources["top_p"]) == (0.8, Source.SERVER)
    assert effective.sources["history"] == Source.DEFAULT
    other = await settings.effective(Place(GUILD, CHANNEL + 1))
    assert (other.values.temperature, other.sources["temperature"]) == (1.5, Source.SERVER)


async def test_a_thread_inherits_its_parent_channel_unless_it_has_its_own(settings: ChannelSettings) -> None:
    """A thread takes its parent's settings; its own settings win over them."""
    await settings.change(IN_CHANNEL, Scope.CHANNEL, {"system_prompt": "Speak like a pirate.", "history": False})
    await settings.change(IN_THREAD, Scope.CHANNEL, {"history": True})
    effective = await settings.effective(IN_THREAD)
    assert (effective.values.system_prompt, effective.sources["system_prompt"]) == (
        "Speak like a pirate.",
        Source.CHANNEL,
    )
    assert (effective.values.history, effective.sources["history"]) == (True, Source.THREAD)


async def test_reset_one_setting_falls_back_to_the_inherited_value(settings: ChannelSettings) -> None:
    """Resetting a channel's temperature brings back the guild's."""
    await settings.change(IN_CHANNEL, Scope.GUILD, {"temperature": 1.5})
    await settings.change(IN_CHANNEL, Scope.CHANNEL, {"temperature": 0.2, "top_p": 0.5})
    effective = await settings.reset(IN_CHANNEL, Scope.CHANNEL, "temperature")
    assert (effective.values.temperature, effective.values.top_p) == (1.5, 0.5)
    effective = await settings.reset(IN_CHANNEL, Scope.CHANNEL)
    assert effective.sources["top_p"] == Source.DEFAULT


async def test_a_stored_variant_no_longer_loaded_is_skipped(settings: ChannelSettings, store: Store) -> None:
    """After the operator removes a variant, the next place that sets one (or the default) applies."""
    await store.settings.update(Scope.CHANNEL, CHANNEL, {"variant": "gone"})
    await store.settings.update(Scope.GUILD, GUILD, {"variant": "small"})
    effective = await settings.effective(IN_CHANNEL)
    assert (effective.overrides.variant, effective.sources["variant"]) == ("small", Source.SERVER)


async def test_a_stored_max_new_tokens_above_the_current_cap_is_capped(
    store: Store, engine: Engine, settings: ChannelSettings
) -> None:
    """After the operator lowers [generation] max_new_tokens, a channel's larger value is capped."""
    await settings.change(IN_CHANNEL, Scope.CHANNEL, {"max_new_tokens": 500})
    lowered = ChannelSettings(store, engine, GenerationConfig(max_new_tokens=100))
    assert (await lowered.effective(IN_CHANNEL)).overrides.max_new_tokens == 100


# -- the chat service ------------------------------------------------------------------------


async def test_options_for_gives_the_resolved_options_and_asks_for_a_threads_parent(
    store: Store, engine: Engine, settings: ChannelSettings
) -> None:
    """options_for resolves a thread through the frontend's parent lookup; defaults stay None."""
    chat = ChatService(store, engine, engine.config.generation)
    await settings.change(IN_CHANNEL, Scope.CHANNEL, {"temperature": 0.9, "variant": "small", "history": False})
    await settings.change(IN_CHANNEL, Scope.GUILD, {"system_prompt": "Server rules."})
    assert await chat.options_for(GUILD, THREAD) == ChatOptions(system="Server rules.")

    async def parent_of(channel_id: int) -> int | None:
        return CHANNEL if channel_id == THREAD else None

    chat.parent_of = parent_of
    assert await chat.options_for(GUILD, THREAD) == ChatOptions(
        variant="small",
        history=False,
        system="Server rules.",
        temperature=0.9,
        max_new_tokens=SMALL_WINDOW - PROMPT_ROOM,  # the default of 512 would not fit the small window
    )


async def test_options_for_in_a_dm_uses_the_dms_own_settings(
    store: Store, engine: Engine, settings: ChannelSettings
) -> None:
    """A DM has no guild: its own settings, else the defaults."""
    chat = ChatService(store, engine, engine.config.generation)
    assert await chat.options_for(None, 77) == ChatOptions()
    await settings.change(Place(None, 77), Scope.CHANNEL, {"top_p": 0.5})
    assert await chat.options_for(None, 77) == ChatOptions(top_p=0.5)
