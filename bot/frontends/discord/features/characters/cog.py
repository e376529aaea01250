"""Roleplay characters in Discord: ``/character create|edit|list|show|delete|import|export``.

Characters belong to a server (the store's :class:`~bot.store.StoredCharacter`); scenes cast them and they speak
through channel webhooks under their own name and avatar, so a name must be one Discord accepts for a webhook
(:func:`~bot.core.cards.check_name`). Avatars are downloaded once and stored, because Discord's attachment links
expire; an ``avatar_url`` is stored as given (``https`` only) and never fetched by the bot. Character Card V1/V2/V3
files (``.json`` or PNG) are read and written by :mod:`bot.core.cards`; import, create, edit and show say the card's
size in the model's window (:mod:`~bot.frontends.discord.features.characters.card_notes`).

Every command is acknowledged before the database is read. ``/character create`` answers with its form (the
form is the acknowledgement; its submission is deferred before any work). ``/character edit`` needs the current
values to fill its form, so it first defers, reads them, and offers a button that opens the filled form. A refused
form gives back what was typed as a file, so nothing is lost.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.cards import (
    AVATAR_MAX_BYTES,
    CARD_MAX_BYTES,
    IMAGE_TYPES,
    CardData,
    CardError,
    card_json,
    card_png,
    check_name,
    image_type,
    parse_card,
)
from bot.frontends.discord.features.characters.card_notes import add_card_fields, shown_to, size_text, trimmed_text
from bot.frontends.discord.features.characters.editor import CharacterModal, EditorView
from bot.frontends.discord.services import DiscordBot, Services
from bot.frontends.discord.ui.feedback import DiscordRefusal
from bot.store import CharacterNameTaken, StoredCharacter

_log = logging.getLogger(__name__)

LIST_LIMIT = 1900
"""Characters of ``/character list`` shown; Discord's limit is 2000."""
SHORT_DESCRIPTION = 100


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _filename(name: str) -> str:
    return re.sub(r"[^\w-]+", "_", name).strip("_") or "character"


def _check_avatar_url(url: str) -> str:
    """Only an https link is kept; the bot never fetches it (Discord shows it)."""
    if not re.fullmatch(r"https://[^\s/?#]+\.[^\s/?#]+(?:[/?#]\S*)?", url):
        raise CardError("The avatar link must be an https:// address of an image.")
    return url


def _check_attachment(file: discord.Attachment, limit: int, what: str) -> None:
    """Refuse a file by its declared size (and image type, when Discord gives one) before downloading it."""
    if file.size > limit:
        raise CardError(f"`{file.filename}` is {file.size / 1e6:.1f} MB; {what} can be at most {limit / 1e6:.1f} MB.")


async def _download(file: discord.Attachment) -> bytes:
    try:
        return await file.read()
    except discord.HTTPException as error:
        raise DiscordRefusal(f"I could not download `{file.filename}` ({error.status}); try again.") from error


def _may_change(interaction: discord.Interaction[Any], character: StoredCharacter) -> None:
    if character.creator_id != interaction.user.id and not interaction.permissions.manage_guild:
        raise DiscordRefusal(
            f"Only the person who created “{character.name}” or someone with **Manage Server** can change it."
        )


def character_embed(character: StoredCharacter, filename: str | None) -> discord.Embed:
    """The character as an embed; its avatar is the attached ``filename`` or its stored link."""
    embed = discord.Embed(title=character.name, description=_shorten_block(character.description, 3000) or "—")
    if character.personality:
        embed.add_field(name="Personality", value=_shorten_block(character.personality, 1024), inline=False)
    if character.speaking_style:
        embed.add_field(name="Speaking style", value=_shorten_block(character.speaking_style, 1024), inline=False)
    embed.add_field(name="Created by", value=f"<@{character.creator_id}>")
    if filename is not None:
        embed.set_thumbnail(url=f"attachment://{filename}")
    elif character.avatar_url:
        embed.set_thumbnail(url=character.avatar_url)
    return embed


def _shorten_block(text: str, limit: int) -> str:
    """Like _shorten but keeps line breaks (an embed shows them)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Characters(commands.Cog):
    """The server's roleplay characters."""

    character = app_commands.Group(name="character", description="Roleplay characters of this server", guild_only=True)

    def __init__(self, bot: DiscordBot, services: Services) -> None:
        self.bot = bot
        self.chat = services.chat
        self.characters = services.chat.store.characters

    async def _find(self, interaction: discord.Interaction[Any], name: str) -> StoredCharacter:
        assert interaction.guild_id is not None  # the group is guild-only
        found = await self.characters.get(interaction.guild_id, name)
        if found is None:
            raise CardError(f"There is no character named “{_shorten(name, 80)}” here; see `/character list`.")
        return found

    async def _names(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        wanted = current.casefold()
        names = [c.name for c in await self.characters.list(interaction.guild_id) if wanted in c.name.casefold()]
        return [app_commands.Choice(name=name, value=name) for name in names[:25]]

    # -- create and edit -----------------------------------------------------------------------

    @character.command(name="create")
    @app_commands.describe(
        avatar="An image (PNG, JPEG, GIF or WebP, at most 2 MB) for the character to post with",
        avatar_url="Or an https:// link to an image (kept as given; Discord shows it)",
    )
    async def create_command(
        self,
        interaction: discord.Interaction[Any],
        avatar: discord.Attachment | None = None,
        avatar_url: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        """Create a character: a form asks for its name, description, personality and speaking style."""
        if avatar is not None and avatar_url is not None:
            raise CardError("Give an avatar image or an avatar link, not both.")
        if avatar is not None:
            if avatar.content_type and avatar.content_type.split(";")[0] not in IMAGE_TYPES:
                raise CardError(f"`{avatar.filename}` is not a PNG, JPEG, GIF or WebP image.")
            _check_attachment(avatar, AVATAR_MAX_BYTES, "an avatar")
        if avatar_url is not None:
            _check_avatar_url(avatar_url)
        await interaction.response.send_modal(CharacterModal(self, avatar=avatar, avatar_url=avatar_url))

    async def save(self, interaction: discord.Interaction[Any], form: CharacterModal) -> None:
        """Store what the form holds: a new character, or the edited one."""
        assert interaction.guild_id is not None
        name = check_name(form.name_input.value)
        description = form.description_input.value.strip()
        personality = form.personality_input.value.strip()
        speaking_style = form.speaking_style_input.value.strip()
        if form.character is not None:
            _may_change(interaction, form.character)
            updated = await self.characters.update(
                form.character.id,
                name=name,
                description=description,
                personality=personality,
                speaking_style=speaking_style,
            )
            if updated is None:
                raise CardError(f"“{form.character.name}” was deleted meanwhile; nothing was saved.")
            saved = f"Saved **{discord.utils.escape_markdown(name)}**. {size_text(self.chat, updated)}"
            await interaction.edit_original_response(content=saved)
            return
        avatar = avatar_type = None
        if form.avatar is not None:
            avatar = await _download(form.avatar)
            avatar_type = image_type(avatar)
            if avatar_type is None:
                raise CardError(f"`{form.avatar.filename}` is not a PNG, JPEG, GIF or WebP image.")
            if len(avatar) > AVATAR_MAX_BYTES:
                raise CardError(f"`{form.avatar.filename}` is over {AVATAR_MAX_BYTES / 1e6:.1f} MB.")
        created = await self.characters.create(
            guild_id=interaction.guild_id,
            creator_id=interaction.user.id,
            avatar=avatar,
            avatar_type=avatar_type,
            avatar_url=form.avatar_url,
            name=name,
            description=description,
            personality=personality,
            speaking_style=speaking_style,
        )
        await interaction.edit_original_response(
            content=f"Created **{discord.utils.escape_markdown(created.name)}**. {size_text(self.chat, created)} "
            "See it with `/character show`."
        )

    @character.command(name="edit")
    @app_commands.describe(name="The character to edit")
    async def edit_command(self, interaction: discord.Interaction[Any], name: str) -> None:
        """Edit a character you created (or, with Manage Server, anyone's) in a filled form."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await self._find(interaction, name)
        _may_change(interaction, found)
        await interaction.edit_original_response(
            content=f"Editing **{discord.utils.escape_markdown(found.name)}**: open the form below.",
            view=EditorView(self, found),
        )

    # -- reading -------------------------------------------------------------------------------

    @character.command(name="list")
    async def list_command(self, interaction: discord.Interaction[Any]) -> None:
        """List this server's characters (only you see the list)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None
        found = await self.characters.list(interaction.guild_id)
        if not found:
            await interaction.edit_original_response(
                content="No characters here yet. Make one with `/character create` or `/character import`."
            )
            return
        lines = [f"**{len(found)} character{'s' if len(found) != 1 else ''}:**"]
        for shown, character in enumerate(found):
            line = f"**{discord.utils.escape_markdown(character.name)}**"
            if character.description:
                line += f" — {discord.utils.escape_markdown(_shorten(character.description, SHORT_DESCRIPTION))}"
            if sum(len(x) + 1 for x in lines) + len(line) > LIST_LIMIT:
                lines.append(f"… and {len(found) - shown} more.")
                break
            lines.append(line)
        await interaction.edit_original_response(content="\n".join(lines))

    @character.command(name="show")
    @app_commands.describe(name="The character to show")
    async def show_command(self, interaction: discord.Interaction[Any], name: str) -> None:
        """Show a character (its description, personality, speaking style and avatar) in this channel."""
        await interaction.response.defer(thinking=True)
        found = await self._find(interaction, name)
        files: list[discord.File] = []
        filename = None
        if found.avatar is not None and found.avatar_type is not None:
            filename = f"avatar.{IMAGE_TYPES.get(found.avatar_type, 'png')}"
            files.append(discord.File(io.BytesIO(found.avatar), filename))
        embed = character_embed(shown_to(found, interaction.user.display_name), filename)
        add_card_fields(embed, self.chat, found, interaction.user.display_name)
        await interaction.edit_original_response(embed=embed, attachments=files)

    @character.command(name="delete")
    @app_commands.describe(name="The character to delete")
    async def delete_command(self, interaction: discord.Interaction[Any], name: str) -> None:
        """Delete a character you created (or, with Manage Server, anyone's)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await self._find(interaction, name)
        _may_change(interaction, found)
        await self.characters.delete(found.id)
        await interaction.edit_original_response(content=f"Deleted **{discord.utils.escape_markdown(found.name)}**.")

    # -- cards ---------------------------------------------------------------------------------

    @character.command(name="import")
    @app_commands.describe(
        file="A Character Card V1/V2/V3: a .json file, or a PNG with the card inside (the image becomes the avatar)",
        name="Import under this name instead of the card's",
    )
    async def import_command(
        self,
        interaction: discord.Interaction[Any],
        file: discord.Attachment,
        name: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        """Import a character from a Character Card (V1, V2 or V3; .json or PNG)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None
        is_png = file.filename.lower().endswith(".png") or (file.content_type or "").startswith("image/png")
        _check_attachment(file, AVATAR_MAX_BYTES if is_png else CARD_MAX_BYTES, "a card")
        card = parse_card(await _download(file), file.filename)
        chosen = check_name(name) if name is not None else card.name
        try:
            created = await self.characters.create(
                guild_id=interaction.guild_id,
                name=chosen,
                description=card.description,
                personality=card.personality,
                speaking_style=card.speaking_style,
                creator_id=interaction.user.id,
                avatar=card.avatar,
                avatar_type="image/png" if card.avatar is not None else None,
                extra=card.extra,
            )
        except CharacterNameTaken as taken:
            raise CardError(f"{taken} Import it under another with the `name` option.") from None
        avatar = " with its avatar" if created.has_avatar else ""
        notes = " ".join(text for text in (trimmed_text(card.trimmed, created), size_text(self.chat, created)) if text)
        await interaction.edit_original_response(
            content=f"Imported **{discord.utils.escape_markdown(created.name)}**{avatar}. {notes} "
            "See it with `/character show`."
        )

    @character.command(name="export")
    @app_commands.describe(name="The character to export")
    async def export_command(self, interaction: discord.Interaction[Any], name: str) -> None:
        """Export a character as a Character Card V2: a .json file and a PNG with the card inside."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await self._find(interaction, name)
        card = CardData(
            name=found.name,
            description=found.description,
            personality=found.personality,
            speaking_style=found.speaking_style,
            extra=found.extra,
        )
        avatar_png = found.avatar if found.avatar_type == "image/png" else None
        stem = _filename(found.name)
        files = [
            discord.File(io.BytesIO(card_json(card)), f"{stem}.json"),
            discord.File(io.BytesIO(card_png(avatar_png, card)), f"{stem}.png"),
        ]
        await interaction.edit_original_response(
            content=f"**{discord.utils.escape_markdown(found.name)}** as a Character Card V2 (JSON and PNG).",
            attachments=files,
        )

    @edit_command.autocomplete("name")
    @show_command.autocomplete("name")
    @delete_command.autocomplete("name")
    @export_command.autocomplete("name")
    async def _name_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return await self._names(interaction, current)
