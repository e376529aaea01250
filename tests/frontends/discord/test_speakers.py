"""Characters speaking through the channel's webhook (bot/frontends/discord/ui/voices.py), against the fake Discord."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from bot.frontends.discord.ui.spoken import FALLBACK_NAME, Speaker, speaker_avatar, speaker_name
from bot.frontends.discord.ui.voices import NO_WEBHOOK_PERMISSION, WEBHOOK_NAME, CharacterVoice, VoiceError
from tests.fakediscord import FakeDiscord, Permission
from tests.frontends.discord._helpers import eventually
from tests.frontends.discord.conftest import Running

YODA = Speaker("Yoda", "https://example.org/yoda.png")
LEIA = Speaker("Leia", "https://example.org/leia.png")


async def scene_thread(fake: FakeDiscord, running: Running) -> discord.Thread:
    """A thread Alice starts in the general channel, as the bot sees it."""
    created = await fake.start_thread_as(fake.alice, fake.channel.id, "scene")
    await eventually(lambda: running.bot.get_channel(created.id) is not None)
    thread = running.bot.get_channel(created.id)
    assert isinstance(thread, discord.Thread)
    return thread


def creates(fake: FakeDiscord) -> list[Any]:
    """The webhook creations Discord accepted in the general channel."""
    return [r for r in fake.requests_to("POST", rf"/channels/{fake.channel.id}/webhooks") if r.status == 200]


def executes(fake: FakeDiscord) -> list[Any]:
    return fake.requests_to("POST", r"/webhooks/\d+/[^/]+")


# -- names and avatars ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Yoda", "Yoda"),
        ("Clyde the Discord Bot", "Cl yde the D1scord Bot"),
        ("DISCORD clyde", "D1SCORD cl yde"),
        ("discordiscord", "d1scord1scord"),
        ("Han\nSolo\r\t ", "Han Solo"),
        ("", FALLBACK_NAME),
        (" \n ", FALLBACK_NAME),
        ("x" * 100, "x" * 80),
    ],
)
def test_speaker_name_follows_discords_rules(name: str, expected: str) -> None:
    """Names become one line of 1-80 characters without "discord" or "clyde", and stay readable."""
    assert speaker_name(name) == expected


def test_speaker_name_never_contains_forbidden_words() -> None:
    """However the forbidden words are cut and joined, none remains and the length fits."""
    for name in ("clydiscordclyde" * 10, "Discord" * 20, "cclyde" + "discord" * 12):
        cleaned = speaker_name(name)
        assert 1 <= len(cleaned) <= 80
        assert "discord" not in cleaned.lower() and "clyde" not in cleaned.lower()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cdn.example.org/a.png", "https://cdn.example.org/a.png"),
        ("http://example.org/a.png", None),
        ("attachment://a.png", None),
        ("not a url", None),
        (None, None),
    ],
)
def test_speaker_avatar_accepts_only_https(url: str | None, expected: str | None) -> None:
    """Only absolute https URLs are used as avatars; anything else gets the webhook's default."""
    assert speaker_avatar(url) == expected


# -- through the webhook -----------------------------------------------------------------------


async def test_one_webhook_serves_every_character_and_line(fake: FakeDiscord, running: Running) -> None:
    """The channel's webhook is made once and reused for every character and line; posts land in the thread."""
    thread = await scene_thread(fake, running)
    voice = CharacterVoice(running.bot.replies.throttles)
    yoda = await voice.say(thread, YODA, "Do or do not.")
    leia = await voice.say(thread, LEIA, "Help me, Obi-Wan.")
    again = await voice.say(thread, YODA, "There is no try.")
    assert len(creates(fake)) == 1
    assert len(fake.requests_to("GET", rf"/channels/{fake.channel.id}/webhooks")) == 1  # then cached
    [webhook] = fake.webhooks
    assert webhook.name == WEBHOOK_NAME and webhook.channel_id == fake.channel.id
    assert all(request.query["thread_id"] == str(thread.id) for request in executes(fake))
    posted = {m["id"]: m for m in fake.messages_in(thread.id)}
    for line, speaker, text in (
        (yoda, YODA, "Do or do not."),
        (leia, LEIA, "Help me, Obi-Wan."),
        (again, YODA, "There is no try."),
    ):
        [message_id] = line.message_ids
        message = posted[str(message_id)]
        assert message["content"] == text
        assert message["author"]["username"] == speaker.name
        assert message["avatar_url"] == speaker.avatar_url
        assert message["webhook_id"] == str(webhook.id)


async def test_lines_starting_together_share_one_webhook(fake: FakeDiscord, running: Running) -> None:
    """Characters starting to speak at the same moment still make a single webhook."""
    thread = await scene_thread(fake, running)
    voice = CharacterVoice(running.bot.replies.throttles)
    fake.rate_limit_next("POST", r"/channels/\d+/webhooks", retry_after=0.3)  # a slow creation invites a race
    lines = await asyncio.gather(*(voice.say(thread, Speaker(f"Guard {i}"), f"Halt {i}!") for i in range(4)))
    assert len(creates(fake)) == 1 and len(fake.webhooks) == 1
    assert sorted(fake.message(line.message_ids[0])["content"] for line in lines) == [f"Halt {i}!" for i in range(4)]


async def test_a_restarted_bot_reuses_its_webhook(fake: FakeDiscord, running: Running) -> None:
    """A new voice (after a restart) finds the bot's webhook in the channel instead of making another."""
    thread = await scene_thread(fake, running)
    await CharacterVoice(running.bot.replies.throttles).say(thread, YODA, "Hmm.")
    await CharacterVoice(running.bot.replies.throttles).say(thread, LEIA, "Yes.")
    assert len(creates(fake)) == 1
    assert len(fake.webhooks) == 1


async def test_names_are_cleaned_for_discord(fake: FakeDiscord, running: Running) -> None:
    """A name Discord would refuse is posted cleaned, not refused."""
    thread = await scene_thread(fake, running)
    line = await CharacterVoice(running.bot.replies.throttles).say(thread, Speaker("Clyde the Discord Bot"), "Hi.")
    assert fake.message(line.message_ids[0])["author"]["username"] == "Cl yde the D1scord Bot"


async def test_streaming_edits_are_throttled(fake: FakeDiscord, running: Running) -> None:
    """Many updates become a few edits, at most one per edit period per message, and the last text is shown."""
    thread = await scene_thread(fake, running)
    period = 0.2
    line = await CharacterVoice(running.bot.replies.throttles, edit_period=period).start(thread, YODA)
    words: list[str] = []
    for index in range(30):  # 30 updates in 1.5 periods
        words.append(f"w{index}")
        line.update(" ".join(words))
        await asyncio.sleep(period / 20)
    await line.finish()
    [message_id] = line.message_ids
    assert fake.message(message_id)["content"] == " ".join(words)
    edits = fake.edit_times(thread.id, message_id)
    assert 2 <= len(edits) < 10
    assert fake.max_edits_within(0.9 * period, thread.id, message_id) == 1


async def test_a_long_line_continues_in_a_second_message(fake: FakeDiscord, running: Running) -> None:
    """Past 2000 characters a line continues in a new message from the same character."""
    thread = await scene_thread(fake, running)
    line = await CharacterVoice(running.bot.replies.throttles, edit_period=0.1).start(thread, YODA, "Long, this is.")
    text = " ".join(f"word{i}" for i in range(500))
    await line.finish(text)
    assert len(line.message_ids) == 2
    first, second = (fake.message(message_id) for message_id in line.message_ids)
    assert len(first["content"]) <= 2000
    assert first["content"].split() + second["content"].split() == text.split()
    assert second["author"]["username"] == "Yoda" and second["channel_id"] == str(thread.id)


async def test_a_deleted_webhook_is_made_again_once(fake: FakeDiscord, running: Running) -> None:
    """When a moderator deletes the webhook, the next post makes a new one and goes through."""
    thread = await scene_thread(fake, running)
    voice = CharacterVoice(running.bot.replies.throttles)
    await voice.say(thread, YODA, "First.")
    fake.delete_webhook(fake.webhooks[0].id)
    line = await voice.say(thread, LEIA, "Second.")
    assert len(creates(fake)) == 2
    [webhook] = fake.webhooks
    assert fake.message(line.message_ids[0])["webhook_id"] == str(webhook.id)
    assert fake.message(line.message_ids[0])["content"] == "Second."


async def test_a_webhook_deleted_while_streaming_reposts_the_line(fake: FakeDiscord, running: Running) -> None:
    """An edit through a deleted webhook posts the line again through a new one; the stale copy goes."""
    thread = await scene_thread(fake, running)
    line = await CharacterVoice(running.bot.replies.throttles).start(thread, YODA, "Begin")
    [stale] = line.message_ids
    fake.delete_webhook(fake.webhooks[0].id)
    await line.finish("Begin, we must.")
    [message_id] = line.message_ids
    assert message_id != stale
    assert fake.message(message_id)["content"] == "Begin, we must."
    assert [m["id"] for m in fake.messages_in(thread.id)] == [str(message_id)]


async def test_a_webhook_refused_twice_is_a_clear_error(fake: FakeDiscord, running: Running) -> None:
    """If the new webhook is refused too, the line fails with a VoiceError a user can read."""
    thread = await scene_thread(fake, running)
    voice = CharacterVoice(running.bot.replies.throttles)
    await voice.say(thread, YODA, "First.")
    fake.fail_next("POST", r"/webhooks/\d+/[^/]+", 404, count=2, code=10015, message="Unknown Webhook")
    with pytest.raises(VoiceError, match="webhook"):
        await voice.say(thread, LEIA, "Second.")


# -- without webhooks --------------------------------------------------------------------------


async def test_without_manage_webhooks_the_bot_speaks_in_bold(fake: FakeDiscord, running: Running) -> None:
    """Without Manage Webhooks, lines are the bot's own messages named in bold, and the notice comes once."""
    await fake.set_bot_permissions(fake.channel.id, deny=Permission.MANAGE_WEBHOOKS)
    thread = await scene_thread(fake, running)
    await eventually(lambda: not thread.parent.permissions_for(thread.guild.me).manage_webhooks)  # type: ignore[union-attr]
    voice = CharacterVoice(running.bot.replies.throttles, edit_period=0.1)
    first = await voice.start(thread, YODA, "Hmm")
    await first.finish("Hmm. Strong you are.")
    second = await voice.say(thread, LEIA, "Thanks.")
    assert first.notice == NO_WEBHOOK_PERMISSION and second.notice is None
    assert not first.webhook_used
    contents = [m["content"] for m in fake.messages_in(thread.id)]
    assert contents == [NO_WEBHOOK_PERMISSION, "**Yoda:** Hmm. Strong you are.", "**Leia:** Thanks."]
    assert all(int(m["author"]["id"]) == fake.bot_user.id for m in fake.messages_in(thread.id))
    assert not fake.requests_to("*", r"/channels/\d+/webhooks") and not fake.webhooks


async def test_discord_refusing_webhooks_falls_back_to_bold(fake: FakeDiscord, running: Running) -> None:
    """A 403 from Discord on the webhooks (permissions the bot could not see) also falls back to bold names."""
    thread = await scene_thread(fake, running)
    fake.fail_next("GET", r"/channels/\d+/webhooks", 403, code=50013, message="Missing Permissions")
    line = await CharacterVoice(running.bot.replies.throttles, announce=False).say(thread, YODA, "Hmm.")
    assert line.notice == NO_WEBHOOK_PERMISSION
    assert [m["content"] for m in fake.messages_in(thread.id)] == ["**Yoda:** Hmm."]


async def test_a_channel_with_fifteen_webhooks_falls_back_to_bold(fake: FakeDiscord, running: Running) -> None:
    """Discord's 15-webhooks limit (30007) is not an error: the bot speaks for the characters."""
    thread = await scene_thread(fake, running)
    for index in range(15):
        fake.add_webhook(fake.channel.id, f"Other {index}", fake.bob)
    parent = thread.parent
    assert isinstance(parent, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as refused:
        await parent.create_webhook(name="One too many")
    assert refused.value.code == 30007
    line = await CharacterVoice(running.bot.replies.throttles, announce=False).say(thread, YODA, "Full, it is.")
    assert line.notice is not None and "15 webhooks" in line.notice
    assert fake.message(line.message_ids[0])["content"] == "**Yoda:** Full, it is."


# -- safety and clean-up -----------------------------------------------------------------------


@pytest.mark.parametrize("manage_webhooks", [True, False])
async def test_characters_never_ping(fake: FakeDiscord, running: Running, manage_webhooks: bool) -> None:
    """Mentions in a character's line (users, @everyone) notify nobody, with or without the webhook."""
    if not manage_webhooks:
        await fake.set_bot_permissions(fake.channel.id, deny=Permission.MANAGE_WEBHOOKS)
    thread = await scene_thread(fake, running)
    voice = CharacterVoice(running.bot.replies.throttles, edit_period=0.1, announce=False)
    line = await voice.start(thread, YODA, f"<@{fake.alice.id}>")
    await line.finish(f"<@{fake.alice.id}> @everyone come")
    message = fake.message(line.message_ids[0])
    assert message["content"].endswith("@everyone come")
    assert message["mentions"] == [] and not message["mention_everyone"]
    assert all(edit["mentions"] == [] for edit in message["edits"])


async def test_a_line_can_be_deleted(fake: FakeDiscord, running: Running) -> None:
    """Deleting a line (Regenerate) removes every message it was shown in."""
    thread = await scene_thread(fake, running)
    line = await CharacterVoice(running.bot.replies.throttles).say(thread, YODA, "x " * 1500)
    assert len(line.message_ids) == 2
    await line.delete()
    assert fake.messages_in(thread.id) == []


async def test_a_line_deleted_while_streaming_stops_quietly(fake: FakeDiscord, running: Running) -> None:
    """When someone deletes a streaming line's message, the line shows nothing more and finishing is no error."""
    thread = await scene_thread(fake, running)
    line = await CharacterVoice(running.bot.replies.throttles, edit_period=0.1).start(thread, YODA, "Begin")
    await fake.delete_message_as(line.message_ids[0])
    line.update("Begin, the clone war has.")
    await eventually(lambda: line.gone)
    await line.finish("Begin, the clone war has.")
    assert fake.messages_in(thread.id) == []
