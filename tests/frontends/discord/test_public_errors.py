"""Errors after a public "thinking…" deferral (/ask, /code ...): the asker alone reads them, the channel keeps none."""

from __future__ import annotations

from typing import Any

import pytest

from tests.doubles import ScriptedBackend
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import bot_messages, settled
from tests.frontends.discord.conftest import Running

pytestmark = pytest.mark.timeout(60)

EPHEMERAL = 64
MODEL_FAILED = "⚠️ The model failed while answering; please try again."


async def private_error(fake: FakeDiscord, running: Running, handle: Any) -> str:
    """The text of the one ephemeral followup the asker got, once the channel has no public answer left."""
    (followup,) = await handle.wait_followups(1, timeout=20)
    assert followup["flags"] & EPHEMERAL
    await settled(fake, running.bot)  # a late public edit or post would be made by now
    assert bot_messages(fake, fake.channel.id) == []
    assert handle.original is None
    return str(followup["content"])


async def test_ask_with_a_failing_model_tells_only_the_asker(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """/ask whose model fails: the public "thinking…" answer goes and the error comes as an ephemeral followup."""
    added = await fake.invoke_slash("source add", {"text": "Blueberries are blue.", "title": "Fruit"})
    await added.wait_original(lambda m: bool(m["content"]), timeout=20)
    backend.script = lambda prompt: "FAIL now"
    handle = await fake.invoke_slash("ask", {"question": "What color are blueberries?"})
    assert (await handle.wait_callback())["type"] == 5  # deferred publicly
    assert await private_error(fake, running, handle) == MODEL_FAILED


async def test_code_with_a_failing_model_tells_only_the_asker(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """/code whose model fails: nothing is left in the channel; the asker reads the error privately."""
    backend.script = lambda prompt: "FAIL now"
    handle = await fake.invoke_slash("code", {"task": "FizzBuzz", "language": "python"})
    assert await private_error(fake, running, handle) == MODEL_FAILED


async def test_ask_refused_after_its_public_deferral_is_private(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """/ask with no source in scope: the refusal (through the one error path) reaches the asker alone."""
    handle = await fake.invoke_slash("ask", {"question": "Anything?"})
    assert "/source add" in await private_error(fake, running, handle)
    assert backend.prompts == []
