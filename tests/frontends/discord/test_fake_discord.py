"""The fake Discord, proven against the real discord.py client (not the project's bot)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from discord.http import Route

from tests.fakediscord import ChannelType, FakeDiscord, MessageFlag
from tests.frontends.discord.conftest import pace_identify

pytestmark = pytest.mark.timeout(20)

EDIT_ROUTE = r"/channels/\d+/messages/\d+"


def make_bot(*, message_content: bool = True, sharded: bool = False) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    bot_class = commands.AutoShardedBot if sharded else commands.Bot
    bot = bot_class(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
    pace_identify(bot)
    return bot


@contextlib.asynccontextmanager
async def running(bot: commands.Bot, fake: FakeDiscord, *, sync_guild: bool = False) -> AsyncIterator[commands.Bot]:
    """Start ``bot`` against the fake, wait for on_ready, and close it on exit."""
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    bot.add_listener(on_ready)
    if sync_guild:

        async def setup_hook() -> None:
            await bot.tree.sync(guild=discord.Object(fake.guild.id))

        bot.setup_hook = setup_hook  # type: ignore[method-assign]
    task = asyncio.create_task(bot.start(fake.token))
    try:
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task in done:
            task.result()
        assert ready.is_set(), "bot did not become ready"
        yield bot
    finally:
        await bot.close()
        await task


def guild_command(bot: commands.Bot, fake: FakeDiscord, **kwargs: Any) -> Any:
    return bot.tree.command(guild=discord.Object(fake.guild.id), **kwargs)


# -- connecting ----------------------------------------------------------------------------


async def test_connects_and_sees_the_guild(fake: FakeDiscord) -> None:
    """The client logs in, gets READY and the guild with its channel, and the fake records the intents."""
    bot = make_bot()
    async with running(bot, fake):
        await fake.wait_until_ready(timeout=2)
        guild = bot.get_guild(fake.guild.id)
        assert guild is not None and guild.name == "Test Guild"
        assert [c.name for c in guild.text_channels] == ["general"]
        assert bot.user is not None and bot.user.id == fake.bot_user.id
        assert fake.intents == bot.intents.value
    assert fake.unhandled == []


async def test_sharded_bot_uses_configured_gateway(fake: FakeDiscord) -> None:
    """An AutoShardedBot connects to gateway_url even when /gateway/bot advertises another host."""
    fake.advertised_gateway_url = "wss://gateway.discord.gg"
    bot = make_bot(sharded=True)
    async with running(bot, fake):
        assert [s.shard for s in fake.sessions] == [(0, 1)]
        assert bot.get_guild(fake.guild.id) is not None


async def test_reconnect_resumes_the_session(fake: FakeDiscord) -> None:
    """After op 7 RECONNECT the client resumes through resume_gateway_url and keeps receiving events."""
    bot = make_bot()
    resumed = asyncio.Event()
    received: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_resumed() -> None:
        resumed.set()

    async def on_message(message: discord.Message) -> None:
        await received.put(message)

    bot.add_listener(on_resumed)
    bot.add_listener(on_message)
    async with running(bot, fake):
        await fake.reconnect_clients()
        await asyncio.wait_for(resumed.wait(), 5)
        await fake.send_message(fake.channel.id, fake.alice, "still there?")
        message = await asyncio.wait_for(received.get(), 5)
        assert message.content == "still there?"
        assert len(fake.sessions) == 1


async def test_gateway_outage_is_resumed_with_the_missed_events(fake: FakeDiscord) -> None:
    """A socket closed with 4000 is resumed once the outage ends; a message sent meanwhile is replayed once."""
    bot = make_bot()
    resumed = asyncio.Event()
    received: list[str] = []

    async def on_resumed() -> None:
        resumed.set()

    async def on_message(message: discord.Message) -> None:
        received.append(message.content)

    bot.add_listener(on_resumed)
    bot.add_listener(on_message)
    async with running(bot, fake):
        async with fake.gateway_outage(4000):
            await fake.send_message(fake.channel.id, fake.alice, "while you were away")
        await asyncio.wait_for(resumed.wait(), 5)
        await fake.send_message(fake.channel.id, fake.alice, "welcome back")
        await fake.wait_for(lambda: fake.sessions[0].connection, timeout=5)
        for _ in range(50):
            if len(received) == 2:
                break
            await asyncio.sleep(0.02)
        assert received == ["while you were away", "welcome back"]
        assert len(fake.sessions) == 1


async def test_gateway_outage_ending_the_session_makes_the_client_identify(fake: FakeDiscord) -> None:
    """After a 4009 close the RESUME is refused (INVALID_SESSION); the client identifies anew and misses the gap."""
    bot = make_bot()
    received: list[str] = []

    async def on_message(message: discord.Message) -> None:
        received.append(message.content)

    bot.add_listener(on_message)
    async with running(bot, fake):
        async with fake.gateway_outage(4009):
            await fake.send_message(fake.channel.id, fake.alice, "lost")
        await fake.wait_for(lambda: len(fake.sessions) == 2 and fake.sessions[1].ready, timeout=10)
        await fake.send_message(fake.channel.id, fake.alice, "seen")
        for _ in range(50):
            if received:
                break
            await asyncio.sleep(0.02)
        assert received == ["seen"]
        assert fake.sessions[0].invalid


# -- application commands ------------------------------------------------------------------


async def test_guild_command_sync_is_recorded(fake: FakeDiscord) -> None:
    """Syncing to a guild stores names, descriptions and options, including a sub-command group."""
    bot = make_bot()

    @guild_command(bot, fake, description="Chat with the model")
    @app_commands.describe(prompt="What to say")
    async def chat(interaction: discord.Interaction, prompt: str, temperature: float = 0.5) -> None:
        pass

    source = app_commands.Group(name="source", description="Manage sources")

    @source.command(description="Add a source")
    async def add(interaction: discord.Interaction, url: str) -> None:
        pass

    bot.tree.add_command(source, guild=discord.Object(fake.guild.id))
    async with running(bot, fake, sync_guild=True):
        synced = {c["name"]: c for c in fake.commands(fake.guild.id)}
    assert sorted(synced) == ["chat", "source"]
    assert synced["chat"]["description"] == "Chat with the model"
    assert [(o["name"], o["type"], o.get("required")) for o in synced["chat"]["options"]] == [
        ("prompt", 3, True),
        ("temperature", 10, False),
    ]
    assert synced["chat"]["options"][0]["description"] == "What to say"
    assert synced["source"]["options"][0]["name"] == "add"
    assert synced["source"]["options"][0]["type"] == 1
    assert fake.commands() == []
    assert fake.requests_to("PUT", rf"/applications/{fake.application_id}/guilds/{fake.guild.id}/commands")


async def test_invalid_command_name_is_rejected(fake: FakeDiscord) -> None:
    """A sync Discord would refuse (upper-case option name) fails with 400 Invalid Form Body."""
    bot = make_bot()
    async with running(bot, fake):
        payload = [
            {"name": "chat", "description": "x", "type": 1, "options": [{"name": "Bad", "description": "y", "type": 3}]}
        ]
        with pytest.raises(discord.HTTPException) as caught:
            await bot.http.bulk_upsert_guild_commands(fake.application_id, fake.guild.id, payload)
    assert caught.value.status == 400
    assert caught.value.code == 50035


async def test_slash_command_reaches_callback_and_response_lands(fake: FakeDiscord) -> None:
    """invoke_slash delivers typed options to the callback; send_message lands as the original response."""
    bot = make_bot()
    seen: dict[str, Any] = {}

    @guild_command(bot, fake, description="Tell a joke")
    async def joke(
        interaction: discord.Interaction, topic: str, count: int, spicy: bool, about: discord.Member
    ) -> None:
        seen.update(topic=topic, count=count, spicy=spicy, about=about.display_name, user=interaction.user.id)
        await interaction.response.send_message(f"{count} jokes about {topic}")

    async with running(bot, fake, sync_guild=True):
        handle = await fake.invoke_slash("joke", {"topic": "cats", "count": 2, "spicy": False, "about": fake.bob})
        callback = await handle.wait_callback(timeout=2)
        original = await handle.wait_original(timeout=2)
    assert seen == {"topic": "cats", "count": 2, "spicy": False, "about": "Bob", "user": fake.alice.id}
    assert callback["type"] == 4
    assert original["content"] == "2 jokes about cats"
    assert original["type"] == 20
    assert original["interaction_metadata"]["user"]["id"] == str(fake.alice.id)
    assert fake.messages_in(fake.channel.id)[-1]["id"] == original["id"]
    assert handle.ack_latency is not None and handle.ack_latency < 3


async def test_subcommand_reaches_its_callback(fake: FakeDiscord) -> None:
    """A sub-command of a group is invoked by its path and gets its options."""
    bot = make_bot()
    added: list[str] = []
    source = app_commands.Group(name="source", description="Manage sources")

    @source.command(description="Add a source")
    async def add(interaction: discord.Interaction, url: str) -> None:
        added.append(url)
        await interaction.response.send_message("added", ephemeral=True)

    bot.tree.add_command(source, guild=discord.Object(fake.guild.id))
    async with running(bot, fake, sync_guild=True):
        handle = await fake.invoke_slash("source add", {"url": "https://example.org"})
        original = await handle.wait_original(timeout=2)
    assert added == ["https://example.org"]
    assert original["flags"] & MessageFlag.EPHEMERAL


async def test_defer_followup_and_edit_original(fake: FakeDiscord) -> None:
    """After a thinking defer the first followup fills the placeholder; edits and later followups land too."""
    bot = make_bot()

    @guild_command(bot, fake, description="Think hard")
    async def think(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("answer")
        await interaction.edit_original_response(content="answer (edited)")
        await interaction.followup.send("more")

    async with running(bot, fake, sync_guild=True):
        handle = await fake.invoke_slash("think")
        followups = await handle.wait_followups(1, timeout=2)
        original = await handle.wait_original(lambda m: m["content"] == "answer (edited)", timeout=2)
    assert handle.callback_type == 5
    assert [e["content"] for e in original["edits"]] == ["", "answer", "answer (edited)"]
    assert not original["flags"] & MessageFlag.LOADING
    assert [f["content"] for f in followups] == ["more"]


async def test_late_acknowledgement_is_unknown_interaction(fake: FakeDiscord) -> None:
    """A callback after the ack deadline gets 404 Unknown interaction (10062)."""
    fake.interaction_deadline = 0.2
    bot = make_bot()
    errors: asyncio.Queue[discord.HTTPException] = asyncio.Queue()

    @guild_command(bot, fake, description="Too slow")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.3)
        try:
            await interaction.response.send_message("late")
        except discord.HTTPException as error:
            await errors.put(error)

    async with running(bot, fake, sync_guild=True):
        handle = await fake.invoke_slash("slow")
        error = await asyncio.wait_for(errors.get(), 2)
    assert (error.status, error.code) == (404, 10062)
    assert handle.callback is None
    assert [e.code for _, e in handle.rejected_callbacks] == [10062]


async def test_message_context_menu_gets_the_message(fake: FakeDiscord) -> None:
    """invoke_message_command delivers the target message to a message context menu."""
    bot = make_bot()
    targets: list[str] = []

    @app_commands.context_menu(name="Ask about this message")
    async def ask(interaction: discord.Interaction, message: discord.Message) -> None:
        targets.append(message.content)
        await interaction.response.send_message("thinking about it")

    bot.tree.add_command(ask, guild=discord.Object(fake.guild.id))
    async with running(bot, fake, sync_guild=True):
        target = await fake.send_message(fake.channel.id, fake.bob, "what is a llama?")
        handle = await fake.invoke_message_command("Ask about this message", target["id"])
        await handle.wait_original(timeout=2)
    assert targets == ["what is a llama?"]


# -- threads, edits, limits ----------------------------------------------------------------


async def test_public_thread_with_edit_history(fake: FakeDiscord) -> None:
    """The bot's public thread is recorded and every edit of its message is kept in order."""
    bot = make_bot()
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        thread = await channel.create_thread(name="chat with alice", type=discord.ChannelType.public_thread)
        message = await thread.send("Thinking")
        await message.edit(content="Thinking.")
        await message.edit(content="Thinking..")
    assert [(t.id, t.type, t.name) for t in fake.threads] == [(thread.id, ChannelType.PUBLIC_THREAD, "chat with alice")]
    assert fake.can_view(fake.alice, thread.id)
    [stored] = fake.messages_in(thread.id)
    assert [e["content"] for e in stored["edits"]] == ["Thinking", "Thinking.", "Thinking.."]
    times = [e["at"] for e in stored["edits"]]
    assert times == sorted(times)
    assert len(fake.edit_times(thread.id, message.id)) == 2
    assert fake.max_edits_within(5.0, thread.id) == 2


async def test_bot_sees_its_own_thread_and_messages(fake: FakeDiscord) -> None:
    """THREAD_CREATE and MESSAGE_CREATE for what the bot made over REST reach the bot."""
    bot = make_bot()
    created: asyncio.Queue[discord.Thread] = asyncio.Queue()
    messages: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_thread_create(thread: discord.Thread) -> None:
        await created.put(thread)

    async def on_message(message: discord.Message) -> None:
        await messages.put(message)

    bot.add_listener(on_thread_create)
    bot.add_listener(on_message)
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        thread = await channel.create_thread(name="t", type=discord.ChannelType.public_thread)
        await thread.send("hello from the bot")
        seen_thread = await asyncio.wait_for(created.get(), 2)
        seen = await asyncio.wait_for(messages.get(), 2)
        while seen.type is not discord.MessageType.default:  # the "started a thread" notice comes first
            seen = await asyncio.wait_for(messages.get(), 2)
    assert seen_thread.id == thread.id
    assert seen.author == bot.user
    assert seen.channel.id == thread.id


async def test_thread_without_type_is_private(fake: FakeDiscord) -> None:
    """create_thread() without type= makes a private thread the user cannot see (API v10 default)."""
    bot = make_bot()
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        thread = await channel.create_thread(name="secret")
    assert fake.get_channel(thread.id).type == ChannelType.PRIVATE_THREAD
    assert not fake.can_view(fake.alice, thread.id)
    with pytest.raises(PermissionError):
        await fake.send_message(thread.id, fake.alice, "hello?")


async def test_thread_from_message_has_the_message_id(fake: FakeDiscord) -> None:
    """A thread started from a message gets that message's id."""
    bot = make_bot()
    async with running(bot, fake):
        posted = await fake.send_message(fake.channel.id, fake.alice, "start here")
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.fetch_message(int(posted["id"]))
        thread = await message.create_thread(name="conversation")
    assert thread.id == message.id
    assert fake.message(message.id)["thread"]["id"] == str(thread.id)


async def test_content_over_2000_characters_is_rejected(fake: FakeDiscord) -> None:
    """Discord's 2000-character limit answers 400 with code 50035."""
    bot = make_bot()
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        await channel.send("x" * 2000)
        with pytest.raises(discord.HTTPException) as caught:
            await channel.send("x" * 2001)
    assert (caught.value.status, caught.value.code) == (400, 50035)
    assert [len(m["content"]) for m in fake.messages_in(fake.channel.id)] == [2000]


async def test_rate_limited_edit_is_retried(fake: FakeDiscord) -> None:
    """A 429 on the edit route is retried by discord.py after retry_after and the edit lands."""
    bot = make_bot()
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send("v1")
        fake.rate_limit_next("PATCH", EDIT_ROUTE, retry_after=0.2)
        await message.edit(content="v2")
    statuses = [r.status for r in fake.requests_to("PATCH", EDIT_ROUTE)]
    assert statuses == [429, 200]
    edits = fake.message(message.id)["edits"]
    assert [e["content"] for e in edits] == ["v1", "v2"]


async def test_injected_failure_reaches_the_client(fake: FakeDiscord) -> None:
    """fail_next answers with the given status and Discord error code."""
    bot = make_bot()
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        fake.fail_next("POST", r"/channels/\d+/messages", status=403, code=50013, message="Missing Permissions")
        with pytest.raises(discord.Forbidden) as caught:
            await channel.send("hi")
    assert caught.value.code == 50013


async def test_edit_without_allowed_mentions_pings(fake: FakeDiscord) -> None:
    """AllowedMentions.none() suppresses a ping, but an edit without allowed_mentions is re-parsed and pings."""
    bot = make_bot()
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send(f"{fake.alice.mention} hi", allowed_mentions=discord.AllowedMentions.none())
        await message.edit(content=f"{fake.alice.mention} hi!")
    edits = fake.message(message.id)["edits"]
    assert [e["mentions"] for e in edits] == [[], [str(fake.alice.id)]]


async def test_unknown_route_is_recorded(fake: FakeDiscord) -> None:
    """A route the fake does not serve answers 404 and is listed in fake.unhandled."""
    bot = make_bot()
    async with running(bot, fake):
        with pytest.raises(discord.NotFound):
            await bot.http.request(Route("GET", "/guilds/{guild_id}/audit-logs", guild_id=fake.guild.id))
    assert [(r.method, r.path) for r in fake.unhandled] == [("GET", f"/guilds/{fake.guild.id}/audit-logs")]


# -- users talking to the bot --------------------------------------------------------------


async def test_message_reaches_on_message_with_content(fake: FakeDiscord) -> None:
    """With the Message Content intent a user's message arrives with its content and author."""
    bot = make_bot(message_content=True)
    received: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_message(message: discord.Message) -> None:
        await received.put(message)

    bot.add_listener(on_message)
    async with running(bot, fake):
        await fake.send_message(fake.channel.id, fake.alice, "hello bot")
        message = await asyncio.wait_for(received.get(), 2)
    assert message.content == "hello bot"
    assert message.author.id == fake.alice.id
    assert isinstance(message.author, discord.Member) and message.author.display_name == "Alice"


async def test_message_without_content_intent_is_empty_unless_mentioned(fake: FakeDiscord) -> None:
    """Without the Message Content intent guild messages arrive empty unless they mention the bot."""
    bot = make_bot(message_content=False)
    received: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_message(message: discord.Message) -> None:
        await received.put(message)

    bot.add_listener(on_message)
    async with running(bot, fake):
        await fake.send_message(fake.channel.id, fake.alice, "not for you")
        plain = await asyncio.wait_for(received.get(), 2)
        await fake.send_message(fake.channel.id, fake.alice, "for you", mentions_bot=True)
        mentioned = await asyncio.wait_for(received.get(), 2)
    assert plain.content == ""
    assert mentioned.content == f"<@{fake.bot_user.id}> for you"
    assert bot.user in mentioned.mentions


async def test_button_click_reaches_view_callback(fake: FakeDiscord) -> None:
    """Clicking a button of a discord.ui.View runs its callback, whose edit_message updates the message."""
    bot = make_bot()
    clicked: list[int] = []
    view_stored = asyncio.Event()

    class Controls(discord.ui.View):
        @discord.ui.button(label="Stop", custom_id="stop")
        async def stop_button(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
            clicked.append(interaction.user.id)
            await interaction.response.edit_message(content="stopped", view=None)

    @guild_command(bot, fake, description="Start generating")
    async def generate(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("generating", view=Controls(timeout=None))
        view_stored.set()

    async with running(bot, fake, sync_guild=True):
        command = await fake.invoke_slash("generate")
        reply = await command.wait_original(timeout=2)
        await asyncio.wait_for(view_stored.wait(), 2)
        click = await fake.click_button(reply["id"], "stop", user=fake.bob)
        await click.wait_callback(timeout=2)
    assert clicked == [fake.bob.id]
    assert click.callback_type == 7
    assert fake.message(reply["id"])["content"] == "stopped"
    assert fake.message(reply["id"])["components"] == []


async def test_dm_round_trip(fake: FakeDiscord) -> None:
    """A user's DM reaches the bot as a DMChannel message and the bot's reply lands in that DM."""
    bot = make_bot()

    async def on_message(message: discord.Message) -> None:
        if message.author != bot.user and isinstance(message.channel, discord.DMChannel):
            await message.channel.send(f"you said: {message.content}")

    bot.add_listener(on_message)
    dm = fake.dm_channel(fake.alice)
    async with running(bot, fake):
        await fake.send_message(dm.id, fake.alice, "psst")
        await fake.wait_for(lambda: len(fake.messages_in(dm.id)) == 2, timeout=2)
        user = await bot.fetch_user(fake.bob.id)
        await user.send("hello bob")
    assert [m["content"] for m in fake.messages_in(dm.id)] == ["psst", "you said: psst"]
    assert [m["content"] for m in fake.messages_in(fake.dm_channel(fake.bob).id)] == ["hello bob"]


async def test_webhook_posts_into_thread_as_a_character(fake: FakeDiscord) -> None:
    """A channel webhook posts into a thread with thread_id, a custom username and avatar."""
    bot = make_bot()
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        thread = await channel.create_thread(name="scene", type=discord.ChannelType.public_thread)
        with pytest.raises(discord.HTTPException) as refused:
            await channel.create_webhook(name="Discord Characters")
        webhook = await channel.create_webhook(name="Characters")
        sent = await webhook.send(
            "Greetings, traveller.",
            username="Gandalf",
            avatar_url="https://example.org/g.png",
            thread=thread,
            wait=True,
        )
    assert refused.value.status == 400
    [stored] = [m for m in fake.messages_in(thread.id) if m["id"] == str(sent.id)]
    assert stored["author"]["username"] == "Gandalf"
    assert stored["webhook_id"] == str(webhook.id)
    assert stored["avatar_url"] == "https://example.org/g.png"
    [execute] = fake.requests_to("POST", rf"/webhooks/{webhook.id}/[^/]+")
    assert execute.query["thread_id"] == str(thread.id)


async def test_modal_submit_reaches_on_submit(fake: FakeDiscord) -> None:
    """A modal opened from a slash command is submitted with text-input values that reach on_submit."""
    bot = make_bot()
    submitted: asyncio.Queue[str] = asyncio.Queue()
    modal_open = asyncio.Event()

    class Settings(discord.ui.Modal, title="Settings"):
        prompt: discord.ui.TextInput[Settings] = discord.ui.TextInput(label="System prompt", custom_id="prompt")

        async def on_submit(self, interaction: discord.Interaction) -> None:
            await submitted.put(self.prompt.value)
            await interaction.response.send_message("saved", ephemeral=True)

    @guild_command(bot, fake, description="Change settings")
    async def settings(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Settings())
        modal_open.set()

    async with running(bot, fake, sync_guild=True):
        opened = await fake.invoke_slash("settings")
        await asyncio.wait_for(modal_open.wait(), 2)
        assert opened.modal is not None and opened.modal["title"] == "Settings"
        submit = await fake.submit_modal(opened, {"prompt": "Be terse."})
        value = await asyncio.wait_for(submitted.get(), 2)
        reply = await submit.wait_original(timeout=2)
    assert value == "Be terse."
    assert reply["content"] == "saved"


async def test_global_command_in_dm(fake: FakeDiscord) -> None:
    """A globally synced command runs in a DM: no guild, the user arrives as a User."""
    bot = make_bot()
    users: list[discord.User | discord.Member] = []

    @bot.tree.command(description="Who am I")
    async def whoami(interaction: discord.Interaction) -> None:
        users.append(interaction.user)
        await interaction.response.send_message(f"you are {interaction.user.display_name}")

    async def setup_hook() -> None:
        await bot.tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    dm = fake.dm_channel(fake.alice)
    async with running(bot, fake):
        handle = await fake.invoke_slash("whoami", channel_id=dm.id)
        original = await handle.wait_original(timeout=2)
    assert [type(u) for u in users] == [discord.User]
    assert original["content"] == "you are Alice"
    assert original["channel_id"] == str(dm.id)


async def test_history_is_newest_first(fake: FakeDiscord) -> None:
    """channel.history() pages through GET /channels/{id}/messages newest first."""
    bot = make_bot()
    async with running(bot, fake):
        for text in ("one", "two", "three"):
            await fake.send_message(fake.channel.id, fake.alice, text)
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        contents = [m.content async for m in channel.history(limit=2)]
        oldest_first = [m.content async for m in channel.history(limit=None, oldest_first=True)]
    assert contents == ["three", "two"]
    assert oldest_first == ["one", "two", "three"]


async def test_file_upload_is_stored_and_downloadable(fake: FakeDiscord) -> None:
    """A multipart send (payload_json + files) stores the attachment, which the bot can read back."""
    bot = make_bot()
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("export", file=discord.File(io.BytesIO(b'{"turns": []}'), "history.json"))
        data = await sent.attachments[0].read()
    [stored] = fake.messages_in(fake.channel.id)
    assert stored["content"] == "export"
    assert [a["filename"] for a in stored["attachments"]] == ["history.json"]
    assert data == b'{"turns": []}'
    [upload] = fake.requests_to("POST", r"/channels/\d+/messages")
    assert upload.files == ("history.json",)
    assert upload.json["content"] == "export"


async def test_typing_is_recorded(fake: FakeDiscord) -> None:
    """channel.typing() reaches POST /channels/{id}/typing."""
    bot = make_bot()
    async with running(bot, fake):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        await channel.typing()
    assert len(fake.typing_in(fake.channel.id)) == 1
