"""The bot against the fake Discord: /source add|list|remove, /ask, and "Ask about this message" with its modal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import AccessConfig, Config, SourcesConfig
from bot.store import StoredSource
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord
from tests.frontends.discord.conftest import Running, run_bot

pytestmark = pytest.mark.timeout(60)

EPHEMERAL = 64
BLUEBERRIES = "In a shocking turn of events, blueberries are now green, but will be sticking with the same name."


async def finished(handle: Any, needle: str, timeout: float = 20) -> dict[str, Any]:  # noqa: ASYNC109
    """The interaction's response once it is no longer the "thinking" placeholder and contains ``needle``."""
    return await handle.wait_original(lambda m: needle in m["content"], timeout=timeout)


async def add(fake: FakeDiscord, options: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    handle = await fake.invoke_slash("source add", options, **kwargs)
    return await handle.wait_original(lambda m: bool(m["content"]), timeout=10)


async def stored(running: Running, *scope: int) -> list[StoredSource]:
    return await running.store.sources.in_scope(list(scope))


async def test_source_commands_and_the_message_menu_are_synced(fake: FakeDiscord, running: Running) -> None:
    """/source has add, list and remove; /ask takes a question; the message menu is there."""
    commands = {(c["name"], c["type"]): c for c in fake.commands(fake.guild.id)}
    subs = {o["name"]: o for o in commands[("source", 1)]["options"]}
    assert set(subs) == {"add", "list", "remove"}
    assert [(o["name"], o["type"]) for o in subs["add"]["options"]] == [
        ("text", 3),
        ("file", 11),
        ("title", 3),
        ("url", 3),
    ]
    assert [o["name"] for o in commands[("ask", 1)]["options"]] == ["question"]
    assert ("Ask about this message", 3) in commands


async def test_source_add_stores_typed_text_privately(fake: FakeDiscord, running: Running) -> None:
    """Typed text becomes a source of the channel, with the given title and url; the answer is private."""
    original = await add(fake, {"text": BLUEBERRIES, "title": "Fruit news", "url": "https://web.site/123"})
    assert original["flags"] & EPHEMERAL
    (source,) = await stored(running, fake.channel.id)
    assert (source.title, source.url, source.author_name, source.text) == (
        "Fruit news",
        "https://web.site/123",
        "Alice",
        BLUEBERRIES,
    )
    assert f"#{source.id}" in original["content"] and "Fruit news" in original["content"]


async def test_source_add_reads_a_text_file(fake: FakeDiscord, running: Running) -> None:
    """An attached .md file is downloaded, decoded and stored under its file name."""
    await add(fake, {"file": ("notes.md", "# Notes\n\nBlueberries are green. ✓".encode())})
    (source,) = await stored(running, fake.channel.id)
    assert (source.title, source.text) == ("notes.md", "# Notes\n\nBlueberries are green. ✓")
    assert len(fake.attachment_downloads) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"file": ("photo.png", b"\x89PNG\r\n")}, "not a text file"),
        ({"file": ("data.txt", b"text\x00\x01\x02")}, "not UTF-8 text"),
        ({"file": ("big.txt", b"a" * 100_001)}, "at most 100.0 kB"),
        ({}, "Give the source's text or attach a text file"),
        ({"text": "typed", "file": ("a.txt", b"file")}, "Give the source's text or attach a text file"),
        ({"text": "typed", "url": "not a url"}, "https://"),
    ],
)
async def test_source_add_refuses_bad_input_clearly(
    fake: FakeDiscord, running: Running, options: dict[str, Any], message: str
) -> None:
    """Wrong type, binary, oversized, no input, both inputs and a bad url each get a short private error."""
    original = await add(fake, options)
    assert original["flags"] & EPHEMERAL
    assert message in original["content"]
    assert await stored(running, fake.channel.id) == []


async def test_source_add_counts_against_the_rate_limit(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """A flood of /source add past ``requests_per_minute``: a private "too fast" answer, nothing more stored."""
    engine = scripted_engine(Config(access=AccessConfig(requests_per_minute=2)), backend)
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3") as running:
        answers = [await add(fake, {"text": f"Fact {n}."}) for n in range(3)]
        assert ["Added source" in a["content"] for a in answers] == [True, True, False]
        assert answers[2]["flags"] & EPHEMERAL and "too fast" in answers[2]["content"]
        assert [s.text for s in await stored(running, fake.channel.id)] == ["Fact 0.", "Fact 1."]


async def test_source_add_past_the_channels_cap_is_refused_privately(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """With ``[sources] max_per_channel`` reached, /source add says so privately and stores nothing."""
    engine = scripted_engine(Config(sources=SourcesConfig(max_per_channel=1)), backend)
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3") as running:
        await add(fake, {"text": "The only one."})
        refused = await add(fake, {"text": "One more."})
        assert refused["flags"] & EPHEMERAL
        assert "This channel has 1 source, the most a channel can hold" in refused["content"]
        assert [s.text for s in await stored(running, fake.channel.id)] == ["The only one."]


async def test_wrong_type_and_oversized_files_are_not_downloaded(fake: FakeDiscord, running: Running) -> None:
    """The file's name and size are checked before the bot fetches it."""
    await add(fake, {"file": ("big.txt", b"a" * 100_001)})
    await add(fake, {"file": ("photo.png", b"\x89PNG")})
    assert fake.attachment_downloads == []


async def test_source_list_shows_this_channel_and_a_threads_parent(fake: FakeDiscord, running: Running) -> None:
    """In a thread the list holds the thread's sources and its parent channel's; other channels' never."""
    other = fake.add_text_channel(fake.guild, "other")
    await add(fake, {"text": "Parent fact.", "title": "Parent"})
    await add(fake, {"text": "Elsewhere.", "title": "Other"}, channel_id=other.id)
    thread = await fake.start_thread_as(fake.alice, fake.channel.id, "questions")
    await add(fake, {"text": "Thread fact.", "title": "Thread"}, channel_id=thread.id)
    handle = await fake.invoke_slash("source list", channel_id=thread.id)
    original = await handle.wait_original(lambda m: bool(m["content"]), timeout=10)
    assert original["flags"] & EPHEMERAL
    content = original["content"]
    assert "Parent" in content and "(from the parent channel)" in content and "Thread" in content
    assert "Other" not in content
    assert content.startswith("**2 sources here:**")


async def test_source_remove_is_for_the_author_or_a_moderator(fake: FakeDiscord, running: Running) -> None:
    """Another member is refused; a member with Manage Messages may remove it; a removed id is gone."""
    carol = fake.add_member(fake.guild, "carol", "Carol")
    await add(fake, {"text": "Alice's fact."})
    (source,) = await stored(running, fake.channel.id)
    refused = await fake.invoke_slash("source remove", {"id": source.id}, user=carol)
    assert "Manage Messages" in (await refused.wait_original(lambda m: bool(m["content"])))["content"]
    assert len(await stored(running, fake.channel.id)) == 1
    removed = await fake.invoke_slash("source remove", {"id": source.id}, user=fake.bob)
    assert "Removed source" in (await removed.wait_original(lambda m: bool(m["content"])))["content"]
    assert await stored(running, fake.channel.id) == []
    again = await fake.invoke_slash("source remove", {"id": source.id})
    assert "no source" in (await again.wait_original(lambda m: bool(m["content"])))["content"]


async def test_ask_streams_an_answer_from_the_sources_with_a_footer(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """/ask is deferred publicly, the answer streams into the response, and ends with the sources used."""
    await add(fake, {"text": BLUEBERRIES, "title": "Fruit news", "url": "https://web.site/123"})
    backend.script = lambda prompt: " ".join(["Blueberries", "are", "now", "green."] * 8)
    backend.delay = 0.05
    handle = await fake.invoke_slash("ask", {"question": "What color are blueberries?"})
    callback = await handle.wait_callback()
    assert (callback["type"], (callback.get("data") or {}).get("flags", 0) & EPHEMERAL) == (5, 0)
    original = await finished(handle, "**Sources:**")
    assert original["content"] == (
        "> What color are blueberries?\n"
        + " ".join(["Blueberries", "are", "now", "green."] * 8)
        + "\n\n**Sources:**\n1. Fruit news — <https://web.site/123>"
    )
    assert len(original["edits"]) >= 2  # streamed, not posted at the end
    prompt = backend.prompts[-1].text
    assert "BEGININPUT\nBEGINCONTEXT\ntitle: Fruit news\nurl: https://web.site/123\nauthor: Alice\ndate: " in prompt
    assert f"ENDCONTEXT\n{BLUEBERRIES}\nENDINPUT\nBEGININSTRUCTION\nWhat color are blueberries?\n" in prompt


async def test_ask_with_no_source_says_how_to_add_one(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Without a source in scope a short private message names /source add, and the model never runs."""
    handle = await fake.invoke_slash("ask", {"question": "Anything?"})
    (followup,) = await handle.wait_followups(1, timeout=20)
    assert "no sources here" in followup["content"] and "/source add" in followup["content"]
    assert followup["flags"] & EPHEMERAL and handle.original is None  # the public "thinking…" answer went
    assert backend.prompts == []


async def test_ask_about_a_message_opens_a_modal_then_answers_from_it(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """The menu answers with a modal (no defer first); its submission is deferred, then the message and its text
    file (not its image) are the sources, cited with the message link; nothing is stored."""
    target = await fake.send_message(
        fake.channel.id,
        fake.bob,
        "The lighthouse keeper is named Ada.",
        files=(("log.txt", b"Ada lit the lamp at dusk."), ("photo.png", b"\x89PNG")),
    )
    opened = await fake.invoke_message_command("Ask about this message", target["id"])
    callback = await opened.wait_callback()
    assert callback["type"] == 9
    assert opened.modal is not None and opened.modal["title"] == "Ask about this message"
    submit = await fake.submit_modal(opened, {"question": "Who keeps the lighthouse?"})
    assert (await submit.wait_callback())["type"] == 5
    original = await finished(submit, "**Sources:**")
    link = f"https://discord.com/channels/{fake.guild.id}/{fake.channel.id}/{target['id']}"
    assert original["content"].endswith(f"**Sources:**\n1. message by Bob — <{link}>\n2. log.txt — <{link}>")
    prompt = backend.prompts[-1].text
    assert "The lighthouse keeper is named Ada." in prompt and "Ada lit the lamp at dusk." in prompt
    assert "PNG" not in prompt
    assert await stored(running, fake.channel.id) == []


async def test_ask_about_a_message_without_text_is_refused(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A message with only an image gets a short private error after the modal, and the model never runs."""
    target = await fake.send_message(fake.channel.id, fake.bob, "", files=(("photo.png", b"\x89PNG"),))
    opened = await fake.invoke_message_command("Ask about this message", target["id"])
    await opened.wait_callback()
    submit = await fake.submit_modal(opened, {"question": "What is this?"})
    (followup,) = await submit.wait_followups(1, timeout=20)
    assert followup["content"].startswith("⚠️") and "no text to ask about" in followup["content"]
    assert followup["flags"] & EPHEMERAL
    assert backend.prompts == []
