"""[access] against the fake Discord: who the bot serves where, rate limits, leaving servers, admin commands."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import AccessConfig, Config
from bot.frontends.discord.app.access import BLOCKED, NO_ROLE, OTHER_CHANNEL, SCENES_AGE_RESTRICTED
from bot.store import Scope, StoredSettings
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord, FakeUser, Permission
from tests.frontends.discord._helpers import bot_messages, chat, eventually, final_reply, first_thread, settled
from tests.frontends.discord.conftest import Running, run_bot

pytestmark = pytest.mark.timeout(60)

TOO_FAST = re.compile(r"⚠️ You're sending requests too fast; try again in \d+ s\.")
MANAGE_GUILD = 1 << 5


@contextlib.asynccontextmanager
async def serving(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path, **access: Any) -> AsyncIterator[Running]:
    """The bot with these ``[access]`` settings, connected to the fake."""
    engine = scripted_engine(Config(access=AccessConfig(**access)), backend)
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3") as running:
        yield running


async def refusal(handle: Any) -> str:
    """The text of an interaction's private answer (a refusal answers at once, ephemeral)."""
    callback = await handle.wait_callback(timeout=10)
    assert (callback["type"], callback["data"]["flags"] & 64) == (4, 64)
    return str(callback["data"]["content"])


async def stored_contents(running: Running, thread_id: int) -> list[str]:
    conversation = await running.store.get_conversation(f"thread:{thread_id}")
    if conversation is None:
        return []
    return [m.content for m in await running.store.history(conversation.id, limit=50)]


# -- blocked users ---------------------------------------------------------------------------------


async def test_a_blocked_user_gets_a_private_refusal_for_a_command(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """/chat by a blocked user is answered privately and goes no further: no thread, no model."""
    async with serving(fake, backend, tmp_path, blocked_users=[fake.bob.id]):
        assert await refusal(await chat(fake, "hello", user=fake.bob)) == f"⚠️ {BLOCKED}"
        assert fake.threads == [] and backend.prompts == []


async def test_a_blocked_users_thread_messages_get_silence_and_are_not_stored(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """In a bot thread, a blocked user's message gets no answer (no refusal either) and is not stored."""
    async with serving(fake, backend, tmp_path, blocked_users=[fake.bob.id]) as running:
        await chat(fake, "hello")
        thread = await first_thread(fake)
        await final_reply(fake, thread.id)
        await fake.send_message(thread.id, fake.bob, "let me in")
        await fake.send_message(fake.channel.id, fake.bob, "and here?", mentions_bot=True)
        await settled(fake, running.bot)
        assert len(bot_messages(fake, thread.id)) == 1 and len(fake.threads) == 1
        assert "let me in" not in await stored_contents(running, thread.id)
        assert len(backend.prompts) == 1


async def test_a_blocked_user_pressing_regenerate_is_refused(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Buttons pass the gate too: Regenerate by a blocked user is refused privately."""
    async with serving(fake, backend, tmp_path, blocked_users=[fake.bob.id]):
        await chat(fake, "hello")
        (reply,) = await final_reply(fake, (await first_thread(fake)).id)
        handle = await fake.click_button(reply["id"], f"airoboros:regenerate:{fake.alice.id}", user=fake.bob)
        assert await refusal(handle) == f"⚠️ {BLOCKED}"
        assert len(backend.prompts) == 1


# -- places and roles ------------------------------------------------------------------------------


async def test_other_channels_are_refused_and_a_thread_counts_as_its_parent(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """/chat outside allowed_channels is refused; in a thread of an allowed channel messages are answered."""
    other = fake.add_text_channel(fake.guild, "elsewhere")
    async with serving(fake, backend, tmp_path, allowed_channels=[fake.channel.id]):
        assert await refusal(await chat(fake, "hi", channel_id=other.id)) == f"⚠️ {OTHER_CHANNEL}"
        await fake.send_message(other.id, fake.alice, "hello?", mentions_bot=True)
        await chat(fake, "hello")
        thread = await first_thread(fake)
        await final_reply(fake, thread.id)
        await fake.send_message(thread.id, fake.alice, "and in the thread?")
        await final_reply(fake, thread.id, count=2)
        assert len(fake.threads) == 1 and bot_messages(fake, other.id) == []


async def test_allowed_roles_serve_only_their_members(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """With allowed_roles, a member without one is refused; a member with one is answered."""
    role = fake.add_role(fake.guild, "AI users", Permission.EVERYONE)
    fake.guild.members[fake.bob.id].role_ids.append(role.id)
    async with serving(fake, backend, tmp_path, allowed_roles=[role.id]):
        assert await refusal(await chat(fake, "hi")) == f"⚠️ {NO_ROLE}"
        await chat(fake, "hello", user=fake.bob)
        await final_reply(fake, (await first_thread(fake)).id)


async def test_dms_can_be_turned_off(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> None:
    """allow_dms = false: a DM gets silence, and nothing is stored."""
    dm = fake.dm_channel(fake.alice)
    async with serving(fake, backend, tmp_path, allow_dms=False) as running:
        await fake.send_message(dm.id, fake.alice, "hello")
        await settled(fake, running.bot)
        assert bot_messages(fake, dm.id) == [] and backend.prompts == []
        assert await running.store.get_conversation(f"dm:{dm.id}") is None


# -- servers ---------------------------------------------------------------------------------------


async def test_the_bot_leaves_servers_not_allowed_at_start_and_on_join(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """A server it is in at start, and one it is added to later, are left unless allowed."""
    stray = fake.add_guild("Stray")
    async with serving(fake, backend, tmp_path, allowed_guilds=[fake.guild.id]) as running:
        await fake.wait_for(lambda: fake.left_guilds == [stray.id] or None, timeout=10)
        later = fake.add_guild("Later")
        await fake.wait_for(lambda: fake.left_guilds == [stray.id, later.id] or None, timeout=10)
        await eventually(lambda: [g.id for g in running.bot.guilds] == [fake.guild.id])


# -- rate limits -----------------------------------------------------------------------------------


async def test_commands_past_the_rate_limit_say_when_to_try_again(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """The second /chat in a minute (limit 1) is refused privately with the seconds to wait; others still chat."""
    async with serving(fake, backend, tmp_path, requests_per_minute=1):
        await chat(fake, "first")
        await final_reply(fake, (await first_thread(fake)).id)
        assert TOO_FAST.fullmatch(await refusal(await chat(fake, "second")))
        await chat(fake, "mine", user=fake.bob)
        await fake.wait_for(lambda: len(fake.threads) == 2 or None)


async def test_messages_past_the_rate_limit_get_one_reply_per_wait(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Past the limit, the first message gets a short reply saying when; the next ones silence; none is stored."""
    async with serving(fake, backend, tmp_path, requests_per_minute=2) as running:
        await chat(fake, "one")
        thread = await first_thread(fake)
        await final_reply(fake, thread.id)
        await fake.send_message(thread.id, fake.alice, "two")
        await final_reply(fake, thread.id, count=2)
        await fake.send_message(thread.id, fake.alice, "three")
        told = await fake.wait_for(lambda: bot_messages(fake, thread.id)[2:] or None)
        await fake.send_message(thread.id, fake.alice, "four")
        await settled(fake, running.bot)
        assert [m["content"] for m in bot_messages(fake, thread.id)[2:]] == [told[0]["content"]]
        assert TOO_FAST.fullmatch(told[0]["content"])
        assert not {"three", "four"} & set(await stored_contents(running, thread.id))


async def test_regenerate_counts_against_the_rate_limit(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Regenerate reaches the model, so past the limit it is refused privately with the wait."""
    async with serving(fake, backend, tmp_path, requests_per_minute=1):
        await chat(fake, "hello")
        (reply,) = await final_reply(fake, (await first_thread(fake)).id)
        handle = await fake.click_button(reply["id"], f"airoboros:regenerate:{fake.alice.id}", user=fake.alice)
        assert TOO_FAST.fullmatch(await refusal(handle))
        assert len(backend.prompts) == 1


# -- scenes ----------------------------------------------------------------------------------------


async def test_age_restricted_scenes_start_only_in_age_restricted_channels(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """scenes_age_restricted: /scene start is refused in a plain channel and opens its thread in an NSFW one."""
    nsfw = fake.add_text_channel(fake.guild, "after-dark", nsfw=True)
    async with serving(fake, backend, tmp_path, scenes_age_restricted=True) as running:
        await yoda(running, fake)
        options = {"characters": "Yoda", "setting": "A swamp."}
        refused = await fake.invoke_slash("scene start", options, user=fake.alice)
        assert await refusal(refused) == f"⚠️ {SCENES_AGE_RESTRICTED}"
        assert fake.threads == []
        await fake.invoke_slash("scene start", options, user=fake.alice, channel_id=nsfw.id)
        thread = await first_thread(fake)
        assert thread.parent_id == nsfw.id


async def test_a_blocked_users_line_in_a_scene_gets_silence(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Scene threads pass the gate too: a blocked user's line plays no turn and is not stored."""
    async with serving(fake, backend, tmp_path, blocked_users=[fake.bob.id]) as running:
        await yoda(running, fake)
        await fake.invoke_slash("scene start", {"characters": "Yoda", "setting": "A swamp."}, user=fake.alice)
        thread = await first_thread(fake)
        await eventually(lambda: len(backend.prompts) == 1 and not running.chat.replying(f"thread:{thread.id}"), 10)
        await fake.send_message(thread.id, fake.bob, "let me in")
        await settled(fake, running.bot)
        assert len(backend.prompts) == 1
        assert "let me in" not in await stored_contents(running, thread.id)


# -- admin commands and threads --------------------------------------------------------------------


async def test_server_settings_are_checked_at_run_time_even_when_the_command_is_open_to_all(
    fake: FakeDiscord, running: Running
) -> None:
    """A stale or opened-up /settings still refuses scope:guild without Manage Server, and allows it with it."""
    (command,) = [c for c in fake.commands(fake.guild.id) if c["name"] == "settings"]
    assert command["default_member_permissions"] is not None  # hidden from plain members by default
    command["default_member_permissions"] = None  # what Server Settings > Integrations can do
    handle = await fake.invoke_slash("settings set", {"temperature": 1.5, "scope": "guild"}, user=fake.alice)
    refused = await handle.wait_original(lambda m: bool(m["content"]), timeout=10)
    assert "Manage Server" in refused["content"]
    assert await running.store.settings.get(Scope.GUILD, fake.guild.id) == StoredSettings()
    admin = grant(fake, "admin", MANAGE_GUILD)
    handle = await fake.invoke_slash("settings set", {"temperature": 1.5, "scope": "guild"}, user=admin)
    await handle.wait_original(lambda m: m["content"].startswith("Saved"), timeout=10)
    assert (await running.store.settings.get(Scope.GUILD, fake.guild.id)).temperature == 1.5


async def test_a_thread_the_bot_neither_made_nor_was_mentioned_in_is_left_alone(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A message in someone else's thread, without a mention, gets no answer and nothing is stored."""
    thread = await fake.start_thread_as(fake.alice, fake.channel.id, "Alice's own thread")
    await fake.send_message(thread.id, fake.alice, "just us humans here")
    await settled(fake, running.bot)
    assert bot_messages(fake, thread.id) == [] and backend.prompts == []
    assert await running.store.get_conversation(f"thread:{thread.id}") is None


def grant(fake: FakeDiscord, username: str, permissions: int) -> FakeUser:
    """A new member with a role giving ``permissions`` on top of @everyone's."""
    user = fake.add_member(fake.guild, username)
    role = fake.add_role(fake.guild, f"role-{username}", Permission.EVERYONE | permissions)
    fake.guild.members[user.id].role_ids.append(role.id)
    return user


async def yoda(running: Running, fake: FakeDiscord) -> None:
    """A character of the test server, for scenes."""
    await running.store.characters.create(
        guild_id=fake.guild.id,
        name="Yoda",
        description="the ever clever jedi master.",
        personality="",
        speaking_style="",
        creator_id=fake.alice.id,
        avatar_url=None,
    )


async def test_a_blocked_user_can_still_delete_their_data(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """/forget-me and its confirm button pass the gate for a blocked user: deleting one's data is never refused."""
    async with serving(fake, backend, tmp_path, blocked_users=[fake.bob.id]) as running:
        await running.store.characters.create(
            guild_id=fake.guild.id, name="Bo", description="d", personality="p", speaking_style="s",
            creator_id=fake.bob.id,
        )  # fmt: skip
        handle = await fake.invoke_slash("forget-me", user=fake.bob)
        answer = await handle.wait_original(lambda m: bool(m["content"]), timeout=20)
        confirm = next(
            c["custom_id"] for row in answer["components"] for c in row["components"] if c["label"] == "Delete my data"
        )
        await fake.click_button(answer["id"], confirm, user=fake.bob)
        await fake.wait_for(lambda: fake.message(answer["id"])["content"].startswith("Done"), timeout=20)
        assert await running.store.characters.get(fake.guild.id, "Bo") is None
