"""/settings against the fake Discord: show, set, reset, who may change what, and settings reaching the model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from bot.frontends.discord.features.settings import variant_choices
from bot.store import Scope, StoredSettings
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord, FakeUser, Permission
from tests.frontends.discord._helpers import chat, final_reply, first_thread
from tests.frontends.discord.conftest import Running, run_bot

pytestmark = pytest.mark.timeout(60)

MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5


def grant(fake: FakeDiscord, user: FakeUser, permissions: int) -> None:
    """Give ``user`` a role with ``permissions`` on top of @everyone's."""
    role = fake.add_role(fake.guild, f"role-{permissions}", Permission.EVERYONE | permissions)
    fake.guild.members[user.id].role_ids.append(role.id)


def open_to_everyone(fake: FakeDiscord) -> None:
    """What a server admin does in Server Settings > Integrations: /settings for every member."""
    (command,) = [c for c in fake.commands(fake.guild.id) if c["name"] == "settings"]
    command["default_member_permissions"] = None


async def settings(fake: FakeDiscord, sub: str, user: FakeUser, **options: Any) -> dict[str, Any]:
    """Run ``/settings <sub>`` and return its answer once the deferred response is filled in."""
    handle = await fake.invoke_slash(f"settings {sub}", options, user=user)
    callback = await handle.wait_callback()
    assert (callback["type"], callback["data"]["flags"] & 64) == (5, 64)  # acknowledged first, privately
    return await handle.wait_original(lambda m: bool(m["content"] or m["embeds"]), timeout=10)


def fields(answer: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The embed's fields as name -> (where the value comes from, the value)."""
    (embed,) = answer["embeds"]
    shown = {}
    for field in embed["fields"]:
        source, value = field["value"].split("\n", 1)
        shown[field["name"]] = (source.strip("*"), value)
    return shown


async def test_settings_is_synced_for_members_who_can_manage_channels(fake: FakeDiscord, running: Running) -> None:
    """The group hides from plain members by default and has show, set and reset."""
    (command,) = [c for c in fake.commands(fake.guild.id) if c["name"] == "settings"]
    assert int(command["default_member_permissions"]) == MANAGE_CHANNELS
    assert {o["name"] for o in command["options"]} == {"show", "set", "reset"}


async def test_settings_commands_are_acknowledged_before_the_database_is_read(
    fake: FakeDiscord, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a settings table slower than Discord's deadline, show and set are still acknowledged in time."""
    grant(fake, fake.alice, MANAGE_CHANNELS)
    fake.interaction_deadline = 0.5
    table = running.store.settings
    for name in ("get_many", "update"):
        original = getattr(table, name)

        async def slow(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            await asyncio.sleep(0.8)
            return await _original(*args, **kwargs)

        monkeypatch.setattr(table, name, slow)
    for sub, options in (("show", {}), ("set", {"temperature": 1.0})):
        handle = await fake.invoke_slash(f"settings {sub}", options, user=fake.alice)
        await handle.wait_callback()
        assert handle.ack_latency is not None and handle.ack_latency < 0.5
        assert fields(await handle.wait_original(lambda m: bool(m["embeds"]), timeout=10))


async def test_set_then_show_gives_each_value_with_its_source(fake: FakeDiscord, running: Running) -> None:
    """Values set for the channel show as "channel"; the rest as "default"."""
    grant(fake, fake.alice, MANAGE_CHANNELS)
    saved = await settings(
        fake, "set", fake.alice, temperature=0.9, system_prompt="Speak like a pirate.", history=False
    )
    assert saved["content"] == "Saved temperature, system_prompt, history."
    shown = fields(await settings(fake, "show", fake.alice))
    assert shown["Temperature"] == ("channel", "`0.9`")
    assert shown["System prompt"] == ("channel", "Speak like a pirate.")
    assert shown["History"] == ("channel", "off")
    assert shown["Top p"] == ("default", "`1.0`")
    assert shown["Model variant"] == ("default", "`smollm2`")


async def test_settings_survive_a_restart(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> None:
    """What was set before the bot restarted still shows, and still applies, after it."""
    engine = scripted_engine(Config(), backend)
    db = tmp_path / "bot.sqlite3"
    grant(fake, fake.alice, MANAGE_CHANNELS)
    async with run_bot(fake, engine, db):
        await settings(fake, "set", fake.alice, max_new_tokens=3)
    async with run_bot(fake, engine, db):
        assert fields(await settings(fake, "show", fake.alice))["Max new tokens"] == ("channel", "`3`")
        backend.script = lambda prompt: "one two three four five"
        await chat(fake, "Count to five.")
        (reply,) = await final_reply(fake, (await first_thread(fake)).id)
        assert reply["content"] == "one two three"  # the scripted model writes a word a token


async def test_server_defaults_need_manage_server(fake: FakeDiscord, running: Running) -> None:
    """scope:guild by someone with only Manage Channels is refused by name; nothing is stored."""
    grant(fake, fake.alice, MANAGE_CHANNELS)
    refused = await settings(fake, "set", fake.alice, temperature=1.2, scope="guild")
    assert "Manage Server" in refused["content"]
    assert await running.store.settings.get(Scope.GUILD, fake.guild.id) == StoredSettings()


async def test_server_defaults_apply_in_every_channel(fake: FakeDiscord, running: Running) -> None:
    """A Manage Server member's defaults show as "server" in a channel without its own."""
    grant(fake, fake.alice, MANAGE_CHANNELS | MANAGE_GUILD)
    await settings(fake, "set", fake.alice, top_p=0.8, scope="guild")
    other = fake.add_text_channel(fake.guild, "random")
    handle = await fake.invoke_slash("settings show", {}, user=fake.alice, channel_id=other.id)
    shown = fields(await handle.wait_original(lambda m: bool(m["embeds"]), timeout=10))
    assert shown["Top p"] == ("server", "`0.8`")


async def test_opened_to_everyone_members_can_show_but_not_change(fake: FakeDiscord, running: Running) -> None:
    """With /settings opened to all, a plain member sees the settings and is refused a change by name."""
    open_to_everyone(fake)
    assert fields(await settings(fake, "show", fake.alice))["Temperature"] == ("default", "`0.5`")
    refused = await settings(fake, "set", fake.alice, temperature=1.0)
    assert "Manage Channels" in refused["content"]
    assert await running.store.settings.get(Scope.CHANNEL, fake.channel.id) == StoredSettings()


async def test_a_bad_value_gets_a_clear_error_and_stores_nothing(fake: FakeDiscord, running: Running) -> None:
    """top_p 0 (which Discord lets through) is refused with the range; the valid value beside it is not stored."""
    grant(fake, fake.alice, MANAGE_CHANNELS)
    refused = await settings(fake, "set", fake.alice, top_p=0.0, temperature=1.0)
    assert refused["content"] == "⚠️ top_p must be above 0 and at most 1 (1 turns it off); got 0.0."
    assert await running.store.settings.get(Scope.CHANNEL, fake.channel.id) == StoredSettings()


async def test_an_unknown_variant_is_refused_with_the_loaded_ones(fake: FakeDiscord, running: Running) -> None:
    """A variant typed past the autocomplete must still be a loaded one."""
    grant(fake, fake.alice, MANAGE_CHANNELS)
    refused = await settings(fake, "set", fake.alice, variant="gpt-5")
    assert "no loaded model variant called 'gpt-5'; choose one of: smollm2" in refused["content"]


async def test_reset_brings_back_the_defaults(fake: FakeDiscord, running: Running) -> None:
    """After /settings reset the channel's values are gone and the defaults show."""
    grant(fake, fake.alice, MANAGE_CHANNELS)
    await settings(fake, "set", fake.alice, temperature=1.5, max_new_tokens=64)
    reset = await settings(fake, "reset", fake.alice, setting="temperature")
    assert fields(reset)["Temperature"] == ("default", "`0.5`")
    assert fields(reset)["Max new tokens"] == ("channel", "`64`")
    reset = await settings(fake, "reset", fake.alice)
    assert fields(reset)["Max new tokens"] == ("default", "`512`")
    assert await running.store.settings.get(Scope.CHANNEL, fake.channel.id) == StoredSettings()


async def test_a_conversation_uses_its_channels_settings(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """/chat and then a message in its thread get the channel's system prompt and sampling settings."""
    grant(fake, fake.bob, MANAGE_CHANNELS)
    await settings(
        fake, "set", fake.bob, system_prompt="You are a pirate.", temperature=1.3, top_p=0.7, max_new_tokens=40
    )
    await chat(fake, "Ahoy?")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    await fake.send_message(thread.id, fake.alice, "Where is the treasure?")  # the thread inherits its channel's
    await final_reply(fake, thread.id, count=2)
    for prompt, params in zip(backend.prompts, backend.params, strict=True):
        assert "You are a pirate." in prompt.text
        assert (params.temperature, params.top_p, params.max_new_tokens) == (1.3, 0.7, 40)


async def test_regenerate_uses_the_settings_in_force_now(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Settings changed in a thread after a reply apply when it is regenerated."""
    await chat(fake, "Say something.")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    grant(fake, fake.alice, MANAGE_CHANNELS)
    handle = await fake.invoke_slash("settings set", {"temperature": 0.1}, user=fake.alice, channel_id=thread.id)
    shown = fields(await handle.wait_original(lambda m: bool(m["embeds"]), timeout=10))
    assert shown["Temperature"] == ("thread", "`0.1`")
    await fake.click_button(reply["id"], f"airoboros:regenerate:{fake.alice.id}", user=fake.alice)
    await fake.wait_for(lambda: len(backend.params) == 2 or None, timeout=10)
    assert backend.params[-1].temperature == 0.1


async def test_history_off_sends_only_the_new_message(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """With history off (the card's --no-history) the prompt holds only the message being answered."""
    grant(fake, fake.alice, MANAGE_CHANNELS)
    await settings(fake, "set", fake.alice, history=False)
    await chat(fake, "My name is Zed.")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    await fake.send_message(thread.id, fake.alice, "What is my name?")
    await final_reply(fake, thread.id, count=2)
    prompt = backend.prompts[-1].text
    assert "What is my name?" in prompt
    assert "My name is Zed." not in prompt
    assert "Hello there, friend." not in prompt


async def test_a_deleted_threads_settings_are_forgotten(fake: FakeDiscord, running: Running) -> None:
    """Deleting a thread deletes its own settings."""
    thread = await fake.start_thread_as(fake.alice, fake.channel.id, "side talk")
    grant(fake, fake.alice, MANAGE_CHANNELS)
    handle = await fake.invoke_slash("settings set", {"history": False}, user=fake.alice, channel_id=thread.id)
    await handle.wait_original(lambda m: bool(m["embeds"]), timeout=10)
    await fake.delete_thread(thread.id)
    deadline = time.monotonic() + 5
    while await running.store.settings.get(Scope.CHANNEL, thread.id) != StoredSettings():
        assert time.monotonic() < deadline, "the thread's settings were not forgotten"
        await asyncio.sleep(0.02)


def test_variant_autocomplete_offers_the_loaded_variants_matching_what_is_typed() -> None:
    """The autocomplete filters the loaded variants by what was typed, case-insensitively."""
    assert [c.value for c in variant_choices(["qlora", "full", "qlora-vllm"], "QLo")] == ["qlora", "qlora-vllm"]
    assert [c.value for c in variant_choices(["qlora", "full"], "")] == ["qlora", "full"]
