"""The bot's features, one module or package each (its cog, with its buttons and forms beside it).

:data:`FEATURES` is the one list the client registers, in order; :data:`ROLEPLAY` only with ``[discord] roleplay``.
"""

from bot.frontends.discord.features import (
    characters,
    compare,
    conversations,
    privacy,
    quiz,
    scenes,
    settings,
    skills,
    sources,
    status,
)
from bot.frontends.discord.services import Feature

FEATURES: tuple[Feature, ...] = (
    conversations.setup,  # /chat, /reset, messages in threads and DMs, the reply buttons
    sources.setup,  # /source, /ask, "Ask about this message"
    skills.setup,  # /joke, /riddle, /code
    quiz.setup,  # /quiz
    compare.setup,  # /compare
    settings.setup,  # /settings
    privacy.setup,  # /forget-me, /history export, retention
    status.setup,  # /status
)
ROLEPLAY: tuple[Feature, ...] = (
    characters.setup,  # /character
    scenes.setup,  # /scene, messages in scene threads
)

__all__ = ["FEATURES", "ROLEPLAY"]
