"""Keep a secret (the bot token) out of every log line, even one a library writes.

discord.py does not log the token today (checked by ``tests/frontends/discord/test_secrets.py``
with every logger at DEBUG), but a library's debug line or an exception's repr (aiohttp's
``RequestInfo`` carries the request headers, ``Authorization`` included) could. So while the bot
runs, a :class:`Redactor` sits on each handler of the root logger and masks the token, and each
dot-separated part of it, in the message, the traceback and the stack of every record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

MASK = "[redacted]"
_MIN_PART = 6
"""Shorter token parts are too common as text to mask (and too short to be of use to anyone)."""


def token_secrets(token: str) -> list[str]:
    """The token and each of its dot-separated parts long enough to be worth masking, longest first."""
    secrets = {token, *(part for part in token.split(".") if len(part) >= _MIN_PART)}
    return sorted((s for s in secrets if s), key=len, reverse=True)


class Redactor(logging.Filter):
    """A handler filter that replaces each secret with :data:`MASK` in a record before it is written."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def mask(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place (every later handler sees it masked too); never drops it."""
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Formatted here so that the traceback, which may hold the secret in an exception's text, is masked too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


@contextmanager
def redacting(token: str) -> Iterator[Redactor]:
    """Mask ``token`` in everything the root logger's handlers write while the block runs."""
    redactor = Redactor(token_secrets(token))
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(redactor)
    try:
        yield redactor
    finally:
        for handler in handlers:
            handler.removeFilter(redactor)
