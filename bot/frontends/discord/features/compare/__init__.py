"""``/compare``: one prompt through several model variants side by side, with votes on the answers."""

from bot.frontends.discord.features.compare.cog import Compare
from bot.frontends.discord.features.compare.votes import VoteButton
from bot.frontends.discord.services import DiscordBot, Services


async def setup(bot: DiscordBot, services: Services) -> None:
    """``/compare`` and its vote buttons."""
    bot.add_dynamic_items(VoteButton)
    await bot.add_cog(Compare(services))
