"""The character form (``/character create`` and ``edit``) and the button that opens it filled in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

from bot.core.cards import (
    FIELD_MAX_CHARS,
    NAME_MAX_CHARS,
)
from bot.frontends.discord.ui.feedback import report
from bot.store import StoredCharacter

if TYPE_CHECKING:
    from bot.frontends.discord.features.characters.cog import Characters

EDITOR_SECONDS = 600
"""How long the "Open the editor" button and the forms stay usable."""


def _field(
    label: str,
    custom_id: str,
    default: str | None,
    *,
    max_length: int = FIELD_MAX_CHARS,
    required: bool = True,
    placeholder: str | None = None,
) -> discord.ui.TextInput[CharacterModal]:
    """One input of the form: a paragraph, except the one-line name."""
    style = discord.TextStyle.short if custom_id == "name" else discord.TextStyle.paragraph
    return discord.ui.TextInput(
        label=label,
        custom_id=custom_id,
        style=style,
        max_length=max_length,
        required=required,
        default=default,
        placeholder=placeholder,
    )


class CharacterModal(discord.ui.Modal):
    """The character form: create (empty) or edit (filled with the current values)."""

    def __init__(
        self,
        cog: Characters,
        *,
        character: StoredCharacter | None = None,
        avatar: discord.Attachment | None = None,
        avatar_url: str | None = None,
    ) -> None:
        title = " ".join((f"Edit {character.name}" if character else "New character").split())
        super().__init__(title=title if len(title) <= 45 else title[:44] + "…", timeout=EDITOR_SECONDS)
        self.cog = cog
        self.character = character
        self.avatar = avatar
        self.avatar_url = avatar_url
        self.name_input = _field("Name", "name", character.name if character else None, max_length=NAME_MAX_CHARS)
        self.description_input = _field(
            "Description",
            "description",
            character.description if character else None,
            placeholder="Who they are, how they look, what they want",
        )
        self.personality_input = _field(
            "Personality", "personality", character.personality if character else None, required=False
        )
        self.speaking_style_input = _field(
            "Speaking style",
            "speaking_style",
            character.speaking_style if character else None,
            required=False,
            placeholder="e.g. short sentences, sailor's slang",
        )
        for item in (self.name_input, self.description_input, self.personality_input, self.speaking_style_input):
            self.add_item(item)

    def typed(self) -> str:
        """What the person typed, to give back if the form is refused."""
        fields = (
            ("Name", self.name_input),
            ("Description", self.description_input),
            ("Personality", self.personality_input),
            ("Speaking style", self.speaking_style_input),
        )
        return "\n\n".join(f"{label}:\n{item.value}" for label, item in fields)

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        """Acknowledge, then save; refusals reach :meth:`on_error`."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.cog.save(interaction, self)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        """A refused form takes the one error path and gives back what was typed."""
        await report(interaction, error, returned=self.typed())


class EditorView(discord.ui.View):
    """The button under ``/character edit``'s answer that opens the filled form (a form must be a response)."""

    def __init__(self, cog: Characters, character: StoredCharacter) -> None:
        super().__init__(timeout=EDITOR_SECONDS)
        self.cog = cog
        self.character = character

    @discord.ui.button(label="Open the editor", style=discord.ButtonStyle.primary, emoji="✏️")
    async def open_editor(self, interaction: discord.Interaction[Any], button: discord.ui.Button[EditorView]) -> None:
        """The form is the acknowledgement; it holds the values read when the command ran."""
        await interaction.response.send_modal(CharacterModal(self.cog, character=self.character))

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any], /
    ) -> None:
        """A failed press takes the one error path."""
        await report(interaction, error)
