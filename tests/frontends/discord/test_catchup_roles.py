"""Missed messages and ``[access] allowed_roles``: history carries no roles, so the author is looked up first."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import AccessConfig, Config
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord, Permission
from tests.frontends.discord._helpers import bot_messages, chat, final_reply, first_thread, settled
from tests.frontends.discord.conftest import run_bot

pytestmark = pytest.mark.timeout(60)

MEMBER_LOOKUP = r"/guilds/\d+/members/\d+"


async def test_a_role_holders_missed_messages_are_answered_with_one_lookup(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """With allowed_roles, two messages Bob (who has the role) sent during a 4009 outage are answered; his member
    record is fetched once for the catch-up."""
    role = fake.add_role(fake.guild, "AI users", Permission.EVERYONE)
    fake.guild.members[fake.bob.id].role_ids.append(role.id)
    engine = scripted_engine(Config(access=AccessConfig(allowed_roles=[role.id])), backend)
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3"):
        await chat(fake, "Hello", user=fake.bob)
        thread = await first_thread(fake)
        await final_reply(fake, thread.id)
        async with fake.gateway_outage(4009):
            await fake.send_message(thread.id, fake.bob, "First in the gap.")
            await fake.send_message(thread.id, fake.bob, "Second in the gap.")
        await fake.wait_for(lambda: any("Second in the gap." in p.text for p in backend.prompts) or None, timeout=30)
        await final_reply(fake, thread.id, count=2, timeout=30)
        assert "First in the gap." in backend.prompts[-1].text
        assert len(fake.requests_to("GET", MEMBER_LOOKUP)) == 1


async def test_a_missed_message_from_someone_without_the_role_is_still_refused(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """The lookup finds Alice's real roles: without an allowed role her missed message gets silence."""
    role = fake.add_role(fake.guild, "AI users", Permission.EVERYONE)
    fake.guild.members[fake.bob.id].role_ids.append(role.id)
    engine = scripted_engine(Config(access=AccessConfig(allowed_roles=[role.id])), backend)
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3") as running:
        await chat(fake, "Hello", user=fake.bob)
        thread = await first_thread(fake)
        await final_reply(fake, thread.id)
        async with fake.gateway_outage(4009):
            await fake.send_message(thread.id, fake.alice, "Let me in.")
        await fake.wait_for(lambda: fake.requests_to("GET", MEMBER_LOOKUP) or None, timeout=20)
        await settled(fake, running.bot)  # a reply that should not come would have come by now
        assert len(bot_messages(fake, thread.id)) == 1
        assert len(backend.prompts) == 1
