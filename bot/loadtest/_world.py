"""The world the bot is tested in, run as a child process: ``python -m bot.loadtest._world OPTIONS_JSON``.

It holds the fake Discord (``tests/fakediscord``: Discord's global limit and its per-channel message
buckets both enforced) and the :class:`~bot.loadtest._scripted.ScriptedServer`, and talks to the
parent over JSON lines: it writes ``{"ready": {...}}`` with the endpoints, then answers each command
read from stdin: ``connected`` (once the bot's gateway session is ready), ``go`` (every person
writes at once; answered with ``{"done": true}`` once every reply ended or the time ran out, then
with the report, whose reading of the fake's state takes a while at 1,000 conversations) and ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from bot.loadtest._observe import Observer
from bot.loadtest._scripted import ScriptedServer, reply_text
from tests.fakediscord import FakeChannel, FakeDiscord, FakeUser

_log = logging.getLogger(__name__)

CHECK_PERIOD = 0.25
"""Seconds between two looks at the fake's request log while replies stream."""


class World:
    """The fake Discord with one thread per conversation, each with its own person, and the model server."""

    def __init__(self, conversations: int, reply_chars: int, reply_seconds: float) -> None:
        self.text = reply_text(reply_chars)
        self.server = ScriptedServer(self.text, reply_seconds)
        self.fake = FakeDiscord(route_rate_limits=True)
        self.people: list[tuple[FakeChannel, FakeUser]] = []
        self._conversations = conversations

    async def start(self) -> dict[str, Any]:
        await self.fake.start()
        await self.server.start()
        # Threads the bot owns (as if it had opened them with /chat), made before it connects: the bot learns
        # them from GUILD_CREATE, and the load is the replies alone.
        for number in range(self._conversations):
            user = self.fake.add_member(self.fake.guild, f"person{number}", f"Person {number}")
            thread = await self.fake.start_thread_as(self.fake.bot_user, self.fake.channel.id, f"Conversation {number}")
            self.people.append((thread, user))
        return {
            "api_base": self.fake.api_base,
            "gateway_url": self.fake.gateway_url,
            "token": self.fake.token,
            "guild_id": self.fake.guild.id,
            "model_url": self.server.base_url,
        }

    async def close(self) -> None:
        await self.server.close()
        await self.fake.close()

    async def go(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Every person writes in their thread at once; the report once every reply ended (or ``timeout``)."""
        observer = Observer(self.fake, [thread.id for thread, _ in self.people], self.text)
        cpu, started = time.process_time(), time.monotonic()
        await asyncio.gather(
            *(
                self.fake.send_message(thread.id, user, f"Tell me a long story, please ({number}).")
                for number, (thread, user) in enumerate(self.people)
            )
        )
        observer.sent(started)
        deadline = started + timeout
        while not observer.all_final() and time.monotonic() < deadline:
            await asyncio.sleep(CHECK_PERIOD)
            observer.read()
        observer.read()
        _say({"done": True})
        return observer.report(started) | {
            "server": vars(self.server.counts),
            "fake_cpu_s": round(time.process_time() - cpu, 2),
        }


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(options: dict[str, Any]) -> None:
    world = World(options["conversations"], options["reply_chars"], options["reply_seconds"])
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    try:
        _say({"ready": await world.start()})
        while line := (await commands.readline()).decode().strip():
            if line == "connected":
                await world.fake.wait_until_ready(timeout=options["timeout"])
                _say({"connected": True})
            elif line == "go":
                _say({"report": await world.go(options["timeout"])})
            elif line == "quit":
                break
    finally:
        await world.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="fakes: %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(json.loads(sys.argv[1])))
