"""``/scene``: multi-character roleplay scenes in threads, the characters speaking through webhooks."""

from bot.frontends.discord.features.scenes.cog import Scenes
from bot.frontends.discord.services import DiscordBot, Services
from bot.frontends.discord.ui.views import SceneButton


async def setup(bot: DiscordBot, services: Services) -> None:
    """``/scene`` and the turn buttons (Stop, Regenerate)."""
    bot.add_dynamic_items(SceneButton)
    await bot.add_cog(Scenes(bot, services))
