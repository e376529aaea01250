"""The terminal chat: the same engine as the Discord bot, FastChat-style.

Interactive (stdin is a terminal): ``USER:`` prompts, the reply streams after
``ASSISTANT:``; end a line with ``\\`` to keep typing on the next line; ``!!reset``
forgets the conversation, ``!!exit`` (or Ctrl-D) quits. Scripted (stdin is a pipe):
every input line is one prompt, every answer is printed followed by a blank line.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from bot.core.chat import ChatService
from bot.core.chat_prompts import Author, ChatOptions
from bot.errors import BotError

CONVERSATION_KEY = "terminal:1"
TERMINAL_USER = Author(id=0, name="USER")


def read_prompt(stdin: TextIO, stdout: TextIO, *, interactive: bool) -> str | None:
    """One prompt from ``stdin`` (``None`` at end of input); interactive lines ending in ``\\`` continue."""
    lines: list[str] = []
    while True:
        if interactive:
            stdout.write("USER: " if not lines else "... ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            return "\n".join(lines) if lines else None
        line = line.rstrip("\n")
        if interactive and line.endswith("\\"):
            lines.append(line[:-1])
            continue
        lines.append(line)
        return "\n".join(lines)


async def run_chat(
    chat: ChatService,
    options: ChatOptions,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    interactive: bool | None = None,
) -> int:
    """Chat until end of input or ``!!exit``; returns the exit code (1 if any prompt failed)."""
    interactive = stdin.isatty() if interactive is None else interactive
    failures = 0
    while True:
        prompt = await asyncio.to_thread(read_prompt, stdin, stdout, interactive=interactive)
        if prompt is None or prompt.strip() == "!!exit":
            if interactive:
                stdout.write("\n")
            return 1 if failures else 0
        if prompt.strip() == "!!reset":
            await chat.reset(CONVERSATION_KEY)
            stdout.write("(conversation reset)\n\n")
            stdout.flush()
            continue
        if not prompt.strip():
            continue
        if interactive:
            stdout.write("ASSISTANT: ")
        try:
            async with chat.respond(CONVERSATION_KEY, TERMINAL_USER, prompt, options) as reply:
                assert reply is not None  # one person, one message at a time: every message gets its own reply
                async for delta in reply.deltas():
                    stdout.write(delta.lstrip() if reply.text == delta else delta)
                    stdout.flush()
        except BotError as error:
            failures += 1
            stdout.write("\n")
            stderr.write(f"error: {error}\n")
            stderr.flush()
        stdout.write("\n\n")
        stdout.flush()
