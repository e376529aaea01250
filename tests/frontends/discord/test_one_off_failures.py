"""One-off replies (/joke, /code, /ask ...) whose last edit Discord refuses: logged as an error, the asker told."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.doubles import ScriptedBackend
from tests.fakediscord import FakeDiscord
from tests.frontends.discord.conftest import Running

pytestmark = pytest.mark.timeout(60)

ORIGINAL_EDIT = r"/webhooks/\d+/[^/]+/messages/@original"
JOKE = " ".join(f"ha{i}" for i in range(40))


async def joke_cut_short(fake: FakeDiscord, backend: ScriptedBackend) -> Any:
    """/joke whose edits Discord refuses from the moment its text streams (401 Invalid Webhook Token, as when the
    interaction's 15-minute token expired; a 5xx would be retried by discord.py for half a minute); returns it."""
    backend.script = lambda prompt: JOKE
    backend.delay = 0.05
    handle = await fake.invoke_slash("joke", {}, user=fake.alice, channel_id=fake.channel.id, guild_id=fake.guild.id)
    await handle.wait_original(lambda m: m["content"].startswith("ha0"), timeout=20)
    fake.fail_next("PATCH", ORIGINAL_EDIT, 401, count=1000, code=50027, message="Invalid Webhook Token")
    return handle


async def test_a_refused_final_edit_tells_the_asker_privately(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """The asker gets a short private followup naming Discord's refusal and that the answer is cut short."""
    handle = await joke_cut_short(fake, backend)
    (followup,) = await handle.wait_followups(1, timeout=30)
    assert followup["flags"] & 64
    assert followup["content"].startswith("⚠️ Discord did not let me show the end of my answer (401")
    assert followup["content"].endswith("What you see is cut short; please ask again.")
    assert handle.original["content"] != JOKE


async def test_a_refused_final_edit_is_logged_as_an_error(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator sees an error line (not a warning) for a one-off reply Discord shows cut short."""
    handle = await joke_cut_short(fake, backend)
    await handle.wait_followups(1, timeout=30)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("The end of a one-off reply" in line and "could not be shown" in line for line in errors)
