"""The errors users and operators can see.

Every domain error carries the short text a user is shown; frontends print or send
``str(error)`` and never a traceback. The tree::

    BotError
    ├── ConfigError            the config file is missing or invalid (exit code 2)
    │   └── TokenError         DISCORD_TOKEN is missing or Discord refused it (exit code 2)
    ├── ModelLoadError         model files missing, broken or unsupported
    ├── PromptError
    │   └── PromptTooLongError a message cannot fit the model's context window
    ├── BusyError              the scheduler's per-user or global cap is reached
    ├── GenerationError        the model failed while answering one request (OOM included)
    │   └── ShuttingDownError  the backend closed under a request
    ├── DeliveryError          the chat platform would not show a reply (Discord answering 5xx)
    └── StoreError             the database refused an operation
"""

from __future__ import annotations


class BotError(Exception):
    """Base class: ``str(error)`` is a short message fit to show a user."""


class ConfigError(BotError):
    """The configuration file is missing, unreadable or invalid."""


class TokenError(ConfigError):
    """The Discord token (``DISCORD_TOKEN``) is missing, or Discord rejected it or could not be asked."""


class ModelLoadError(BotError):
    """A model, tokenizer or adapter could not be loaded."""


class PromptError(BotError):
    """A conversation could not be turned into a prompt."""


class PromptTooLongError(PromptError):
    """A message (with the parts that are always kept) does not fit the context window."""

    def __init__(self, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(
            f"That message is too long for the model: it needs {needed} tokens "
            f"but only {available} fit in the context window. Please shorten it."
        )


class BusyError(BotError):
    """The scheduler is full (for this user or for everyone)."""


class GenerationError(BotError):
    """The model failed while generating one reply."""


class ShuttingDownError(GenerationError):
    """The backend is closing: requests in flight or arriving now end with this."""

    def __init__(self) -> None:
        super().__init__("The bot is shutting down; please try again.")


class DeliveryError(BotError):
    """The chat platform (Discord) would not show a reply; the reply is stored as failed."""


class StoreError(BotError):
    """The database could not complete an operation."""
