"""``/character``: the server's roleplay characters (create, import, edit, show, export, delete)."""

from bot.frontends.discord.features.characters.cog import Characters
from bot.frontends.discord.services import DiscordBot, Services


async def setup(bot: DiscordBot, services: Services) -> None:
    """``/character``."""
    await bot.add_cog(Characters(bot, services))
