"""The commands through the OpenAI-compatible remote backend: a fake vLLM behind the bot, the fake Discord in front."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from bot.config import Config, ModelConfig
from bot.core.engine import Engine
from bot.inference.remote import OpenAIBackend
from bot.inference.tokenizer import HFTokenizer
from tests.fakediscord import FakeDiscord, Permission
from tests.frontends.discord._helpers import bot_messages, chat, final_reply, first_thread
from tests.frontends.discord.conftest import Running, run_bot
from tests.inference.remote._fake_vllm import MODEL, FakeVLLM, stream, token
from tests.inference.remote._fake_vllm import Reply as Streamed

pytestmark = pytest.mark.timeout(60)

MANAGE_CHANNELS = 1 << 4


@pytest.fixture
async def vllm() -> AsyncIterator[FakeVLLM]:
    server = FakeVLLM()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def remote(
    fake: FakeDiscord, vllm: FakeVLLM, embedded_tokenizer: tuple[HFTokenizer, int], tmp_path: Path
) -> AsyncIterator[Running]:
    """The bot with one variant served by the fake vLLM."""
    model = ModelConfig.model_validate(
        {
            "name": "remote",
            "backend": "openai",
            "base_url": vllm.base_url,
            "model": MODEL,
            "path": "embedded",
            "context_length": 2048,
        }
    )
    config = Config(models=[model])
    backend = OpenAIBackend(model, tokenizer=embedded_tokenizer[0])
    await backend.start()
    engine = Engine(config, {model.name: Engine._wrap(model, backend, config)})
    try:
        async with run_bot(fake, engine, tmp_path / "bot.sqlite3") as running:
            yield running
    finally:
        await backend.close()


def contains(ids: list[int], part: list[int]) -> bool:
    """Whether ``part`` occurs in ``ids`` as a run."""
    return any(ids[i : i + len(part)] == part for i in range(len(ids) - len(part) + 1))


async def answered(handle: Any, text: str) -> dict[str, Any]:
    return await handle.wait_original(lambda m: m["content"] == text, timeout=20)


async def test_settings_reach_the_remote_server_for_a_skill_command(
    fake: FakeDiscord, remote: Running, vllm: FakeVLLM
) -> None:
    """/settings in a channel, then /joke: the server is asked with the channel's sampling and the card's wording."""
    role = fake.add_role(fake.guild, "channel managers", Permission.EVERYONE | MANAGE_CHANNELS)
    fake.guild.members[fake.alice.id].role_ids.append(role.id)
    handle = await fake.invoke_slash(
        "settings set", {"temperature": 0.2, "top_p": 0.8}, user=fake.alice, channel_id=fake.channel.id
    )
    await handle.wait_original(lambda m: bool(m["content"] or m["embeds"]), timeout=10)
    vllm.queue(Streamed(stream(["Why", " did", " the", " cat", " sit?"])))
    joke = await fake.invoke_slash("joke", {"topic": "cats"}, user=fake.alice, channel_id=fake.channel.id)
    await answered(joke, "Why did the cat sit?")
    body = vllm.requests[-1].body
    assert (body["temperature"], body["top_p"]) == (0.2, 0.8)
    assert isinstance(body["prompt"], list)  # token ids: typed special tokens stay plain text on the server too


async def test_a_conversation_streams_from_the_remote_server(
    fake: FakeDiscord, remote: Running, vllm: FakeVLLM
) -> None:
    """/chat through the remote backend opens its thread and streams the server's text, then the history follows."""
    vllm.queue(Streamed(stream(["Hello", " from", " the", " server."])))
    await chat(fake, "Hi there")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"] == "Hello from the server."
    await fake.send_message(thread.id, fake.alice, "And again?")
    await final_reply(fake, thread.id, count=2)
    tokenizer = remote.chat.engine.variant().builder.tokenizer
    assert contains(vllm.requests[-1].body["prompt"], tokenizer.encode_plain("Hello from the server."))


async def test_ask_answers_from_a_source_through_the_remote_server(
    fake: FakeDiscord, remote: Running, vllm: FakeVLLM
) -> None:
    """/source add then /ask: the server gets the card's blocks and the answer ends with the sources."""
    added = await fake.invoke_slash(
        "source add",
        {"text": "The office is closed on 24 December.", "title": "Holidays"},
        user=fake.alice,
        channel_id=fake.channel.id,
    )
    await added.wait_original(lambda m: bool(m["content"]), timeout=10)
    vllm.queue(Streamed(stream(["On", " 24", " December."])))
    ask = await fake.invoke_slash(
        "ask", {"question": "When is the office closed?"}, user=fake.alice, channel_id=fake.channel.id
    )
    answer = await ask.wait_original(lambda m: "Holidays" in m["content"] and "On 24 December." in m["content"], 20)
    assert "Sources" in answer["content"]
    tokenizer = remote.chat.engine.variant().builder.tokenizer
    assert contains(vllm.requests[-1].body["prompt"], tokenizer.encode_plain("BEGININSTRUCTION"))


async def test_server_going_away_mid_reply_keeps_the_text_marked(
    fake: FakeDiscord, remote: Running, vllm: FakeVLLM
) -> None:
    """The server stops mid-reply: the text so far stays, marked as broken off; once it is back the thread goes on."""
    vllm.queue(Streamed([token("Once"), token(" upon")], then="drip"))
    await chat(fake, "Tell me a story")
    thread = await first_thread(fake)
    shown = await fake.wait_for(lambda: (bot_messages(fake, thread.id) or [None])[0], timeout=20)
    await fake.wait_for(lambda: fake.message(shown["id"])["content"].startswith("Once upon") or None, timeout=20)
    await vllm.close()
    marked = await fake.wait_for(lambda: ("⚠️" in (m := fake.message(shown["id"]))["content"] and m) or None, timeout=20)
    assert marked["content"].startswith("Once upon")
    assert marked["content"].endswith("⚠️ The connection to the model server broke off; please try again.")
    back = FakeVLLM()
    await back.start(URL(vllm.base_url).port or 0)
    try:
        back.queue(Streamed(stream(["Still", " here."])))
        await fake.send_message(thread.id, fake.alice, "Are you there?")
        replies = await final_reply(fake, thread.id, count=2)
        assert replies[-1]["content"] == "Still here."
    finally:
        await back.close()
