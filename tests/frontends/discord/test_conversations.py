"""The bot against the fake Discord: /chat, threads, history, streaming, splitting, buttons, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Config
from bot.frontends.discord.ui.splitting import MESSAGE_LIMIT
from bot.store import MessageStatus, Role
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import ChannelType, FakeDiscord
from tests.frontends.discord._helpers import bot_messages, chat, final_reply, first_thread, long_reply_streaming
from tests.frontends.discord.conftest import MESSAGE_WINDOW, PACE, Running, run_bot

pytestmark = pytest.mark.timeout(60)


async def test_commands_are_synced_to_the_configured_guild(fake: FakeDiscord, running: Running) -> None:
    """At start the slash commands appear in the guild with their options."""
    commands = {c["name"]: c for c in fake.commands(fake.guild.id)}
    assert {"chat", "reset"} <= set(commands)
    (prompt,) = commands["chat"]["options"]
    assert (prompt["name"], prompt["type"], prompt["required"]) == ("prompt", 3, True)


async def test_chat_opens_a_public_thread_and_streams_the_reply(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """/chat answers in a new public thread; the placeholder is edited while streaming; the end is exact."""
    words = [f"word{i}" for i in range(30)]
    backend.script = lambda prompt: " ".join(words)
    backend.delay = PACE / 2  # two words per edit period: the edits are paced, and several show the stream
    handle = await chat(fake, "Tell me a joke about bananas.")
    callback = await handle.wait_callback()
    assert (callback["type"], callback["data"]["flags"] & 64) == (5, 64)  # acknowledged first, privately
    thread = await first_thread(fake)
    assert thread.type == ChannelType.PUBLIC_THREAD
    assert thread.name == "Tell me a joke about bananas."
    echo = fake.message(thread.id)  # the thread starts from the prompt, echoed in the channel
    assert echo["content"] == f"**{fake.alice.display_name}:** Tell me a joke about bananas."
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"] == " ".join(words)
    versions = [e["content"] for e in reply["edits"]]
    assert versions[0].startswith("⏳ queued") or versions[0] == "*thinking…*"
    streaming = [v for v in versions[1:-1] if v != versions[-1]]
    assert len(streaming) >= 2
    assert fake.max_edits_within(MESSAGE_WINDOW, thread.id, reply["id"]) <= 1
    assert all(
        r.json.get("allowed_mentions") == {"parse": []}
        for r in fake.requests_to("(POST|PATCH)", r"/channels/\d+/messages")
    )


async def test_a_waiting_reply_shows_its_queue_position(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """With the model busy, the next reply's placeholder says where it stands in the queue."""
    running.chat.engine.variant().scheduler.max_running = 1
    backend.script = lambda prompt: " ".join(f"w{i}" for i in range(30))
    backend.delay = 0.01  # the first reply takes 0.3 s: the second waits
    await chat(fake, "first")
    await fake.wait_for(lambda: fake.threads or None)
    await chat(fake, "second", user=fake.bob)
    second = await fake.wait_for(lambda: fake.threads[1] if len(fake.threads) > 1 else None)
    (reply,) = await final_reply(fake, second.id)
    versions = [e["content"] for e in reply["edits"]]
    assert versions[0] == "⏳ queued #1"
    assert reply["content"] == " ".join(f"w{i}" for i in range(30))


async def test_thread_messages_continue_the_conversation_and_survive_a_restart(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """A later message's prompt holds the earlier exchange, also after the bot restarts."""
    engine = scripted_engine(Config(), backend)
    db = tmp_path / "bot.sqlite3"
    async with run_bot(fake, engine, db):
        await chat(fake, "My name is Zed.")
        thread = await first_thread(fake)
        await final_reply(fake, thread.id)
        await fake.send_message(thread.id, fake.alice, "What is my name?")
        await final_reply(fake, thread.id, count=2)
        assert "My name is Zed." in backend.prompts[-1].text
        assert "Hello there, friend." in backend.prompts[-1].text
    async with run_bot(fake, engine, db):
        await fake.send_message(thread.id, fake.alice, "Still there?")
        await final_reply(fake, thread.id, count=3)
        assert "My name is Zed." in backend.prompts[-1].text
        assert "What is my name?" in backend.prompts[-1].text


async def test_two_people_in_a_thread_are_both_named(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """With two people in the thread, the model sees who said what."""
    await chat(fake, "Hi, I am Alice.")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    await fake.send_message(thread.id, fake.bob, "And I am Bob.")
    await final_reply(fake, thread.id, count=2)
    prompt = backend.prompts[-1].text
    assert f"{fake.alice.display_name}: Hi, I am Alice." in prompt
    assert f"{fake.bob.display_name}: And I am Bob." in prompt


async def test_long_reply_with_code_is_split_without_breaking_fences(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A reply over 2000 characters continues in new messages, each code fence closed and reopened."""
    code = "\n".join(f"print('line {i}')  # {'x' * 40}" for i in range(70))
    backend.script = lambda prompt: f"Here:\n```python\n{code}\n```\nDone."
    backend.delay = 0.0
    await chat(fake, "Write a long program.")
    thread = await first_thread(fake)
    messages = await final_reply(fake, thread.id, count=2)
    contents = [m["content"] for m in messages]
    assert all(len(c) <= MESSAGE_LIMIT for c in contents)
    assert all(sum(1 for line in c.split("\n") if line.startswith("```")) % 2 == 0 for c in contents)
    assert contents[1].startswith("```python\n")
    assert contents[-1].endswith("Done.")
    assert not messages[0].get("components")


async def test_rate_limited_edit_is_retried_and_the_final_text_lands(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A 429 on the edit route is retried by discord.py; the whole reply still arrives."""
    backend.script = lambda prompt: "alpha beta gamma delta epsilon zeta"
    backend.delay = 0.05
    fake.rate_limit_next("PATCH", r"/channels/\d+/messages/\d+", retry_after=0.3, count=2)
    await chat(fake, "Greek letters please")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"] == "alpha beta gamma delta epsilon zeta"
    assert any(r.status == 429 for r in fake.requests_to("PATCH", r"/channels/\d+/messages/\d+"))


async def test_stop_keeps_the_partial_reply_and_marks_it(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Stop cancels the generation; the text so far stays, marked, and is stored as partial."""
    thread, placeholder = await long_reply_streaming(fake, backend)
    carol = fake.add_member(fake.guild, "carol")
    refused = await fake.click_button(placeholder["id"], f"airoboros:stop:{fake.alice.id}", user=carol)
    assert (await refused.wait_callback())["data"]["flags"] & 64
    handle = await fake.click_button(placeholder["id"], f"airoboros:stop:{fake.alice.id}", user=fake.alice)
    await handle.wait_callback()
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"].endswith("*(stopped)*")
    conversation = await running.store.get_conversation(f"thread:{thread.id}")
    assert conversation is not None
    last = await running.store.last_message(conversation.id)
    assert last is not None
    assert (last.role, last.status) == (Role.ASSISTANT, MessageStatus.PARTIAL)
    assert reply["content"].startswith(last.content)


async def test_a_moderator_may_stop_someone_elses_reply(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A member with Manage Messages can press Stop on another person's reply."""
    thread, placeholder = await long_reply_streaming(fake, backend)
    handle = await fake.click_button(placeholder["id"], f"airoboros:stop:{fake.alice.id}", user=fake.bob)
    assert (await handle.wait_callback())["type"] == 6
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"].endswith("*(stopped)*")


async def test_regenerate_replaces_the_last_reply(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Regenerate edits the reply in place with a new answer and stores only that one."""
    await chat(fake, "Say something.")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    backend.script = lambda prompt: "A brand new answer."
    await fake.click_button(reply["id"], f"airoboros:regenerate:{fake.alice.id}", user=fake.alice)
    await fake.wait_for(lambda: fake.message(reply["id"])["content"] == "A brand new answer." or None)
    await final_reply(fake, thread.id)
    conversation = await running.store.get_conversation(f"thread:{thread.id}")
    assert conversation is not None
    history = await running.store.history(conversation.id, limit=10)
    assert [(m.role, m.content) for m in history] == [
        (Role.USER, "Say something."),
        (Role.ASSISTANT, "A brand new answer."),
    ]


async def test_continue_asks_the_model_to_go_on(fake: FakeDiscord, running: Running, backend: ScriptedBackend) -> None:
    """Continue posts the continuation and the prompt ends inside the last reply."""
    await chat(fake, "Start a story.")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    backend.script = lambda prompt: "And then more."
    await fake.click_button(reply["id"], f"airoboros:continue:{fake.alice.id}", user=fake.alice)
    messages = await final_reply(fake, thread.id, count=2)
    assert messages[-1]["content"] == "And then more."
    assert backend.prompts[-1].text.endswith("Hello there, friend.")


async def test_reset_forgets_the_thread(fake: FakeDiscord, running: Running, backend: ScriptedBackend) -> None:
    """/reset in a thread empties its history; the next prompt starts fresh."""
    await chat(fake, "Remember the word pineapple.")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    handle = await fake.invoke_slash("reset", {}, user=fake.alice, channel_id=thread.id, guild_id=fake.guild.id)
    await handle.wait_original(lambda original: "Forgot 2 messages" in original["content"])
    await fake.send_message(thread.id, fake.alice, "What word?")
    await final_reply(fake, thread.id, count=2)
    assert "pineapple" not in backend.prompts[-1].text


async def test_mention_in_a_channel_starts_a_thread(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Mentioning the bot in a channel opens a thread from that message and answers there."""
    message = await fake.send_message(fake.channel.id, fake.alice, "what is up?", mentions_bot=True)
    thread = await fake.wait_for(lambda: fake.threads[0] if fake.threads else None)
    assert thread.id == int(message["id"])
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"] == "Hello there, friend."
    assert "what is up?" in backend.prompts[-1].text
    assert f"<@{fake.bot_user.id}>" not in backend.prompts[-1].text


async def test_direct_messages_are_a_conversation(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A DM gets an answer in the DM, and the next DM sees the history."""
    dm = fake.dm_channel(fake.alice)
    await fake.send_message(dm.id, fake.alice, "hello in private")
    await final_reply(fake, dm.id)
    await fake.send_message(dm.id, fake.alice, "again")
    await final_reply(fake, dm.id, count=2)
    assert "hello in private" in backend.prompts[-1].text


async def test_busy_is_an_ephemeral_answer(fake: FakeDiscord, running: Running) -> None:
    """A full queue gets a short ephemeral reply and no thread."""
    running.chat.engine.variant().scheduler.max_per_user = 0
    handle = await chat(fake, "hello")
    original = await handle.wait_original(lambda original: "requests waiting" in original["content"])
    assert original["flags"] & 64
    assert fake.threads == []
    assert bot_messages(fake, fake.channel.id) == []  # no echo left behind
    (upload,) = fake.requests_to("PATCH", r"/webhooks/\d+/.+/messages/@original")[-1].files
    assert upload == "your-message.txt"  # the prompt comes back, nothing is lost


async def test_message_too_long_for_the_model_is_refused_clearly(fake: FakeDiscord, running: Running) -> None:
    """A message that cannot fit the window gets a short ephemeral error."""
    running.chat.engine.variant().builder.context_length = 600
    handle = await chat(fake, "word " * 700)
    original = await handle.wait_original(lambda original: "too long" in original["content"])
    assert original["flags"] & 64


async def test_model_failure_is_shown_and_the_bot_keeps_serving(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A failing model shows a short error in the reply; the next message is answered."""
    backend.script = lambda prompt: "FAIL now"
    await chat(fake, "break please")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"].startswith("⚠️ The model failed")
    backend.script = lambda prompt: "Fine again."
    await fake.send_message(thread.id, fake.alice, "and now?")
    messages = await final_reply(fake, thread.id, count=2)
    assert messages[-1]["content"] == "Fine again."


async def test_model_output_never_pings(fake: FakeDiscord, running: Running, backend: ScriptedBackend) -> None:
    """@everyone and user mentions written by the model are sent with no mentions allowed."""
    backend.script = lambda prompt: f"Hey @everyone and <@{fake.bob.id}>!"
    await chat(fake, "ping people")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    assert reply["mention_everyone"] is False
    assert reply["mentions"] == []
