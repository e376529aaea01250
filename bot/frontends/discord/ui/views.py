"""The buttons under a reply: Stop, Regenerate, Continue.

They are :class:`discord.ui.DynamicItem` buttons whose ``custom_id`` carries the action
and the id of the person who asked, so they keep working after a restart. A press is
dispatched as the ``reply_button`` event, which the conversations cog listens to.
"""

from __future__ import annotations

import re
from typing import Any, Literal, cast

import discord

from bot.frontends.discord.app.access import AccessChecked

Action = Literal["stop", "regenerate", "continue"]
_LABELS: dict[Action, tuple[str, discord.ButtonStyle]] = {
    "stop": ("Stop", discord.ButtonStyle.danger),
    "regenerate": ("Regenerate", discord.ButtonStyle.secondary),
    "continue": ("Continue", discord.ButtonStyle.secondary),
}


class ReplyButton(
    AccessChecked,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"airoboros:(?P<action>stop|regenerate|continue):(?P<owner>\d+)",
):
    """One reply button; ``owner`` is who asked (only they, or a moderator, may Stop)."""

    def __init__(self, action: Action, owner: int, *, disabled: bool = False) -> None:
        label, style = _LABELS[action]
        super().__init__(
            discord.ui.Button(label=label, style=style, custom_id=f"airoboros:{action}:{owner}", disabled=disabled)
        )
        self.action: Action = action
        self.owner = owner

    def reaches_model(self) -> bool:
        """Regenerate and Continue ask the model again (they count against the rate limit); Stop does not."""
        return self.action != "stop"

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ReplyButton:
        action = cast(Action, match["action"])  # the template only matches the three actions
        return cls(action, int(match["owner"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch("reply_button", interaction, self.action, self.owner)


def reply_view(owner: int, *, streaming: bool) -> discord.ui.View:
    """Stop while the reply streams; Regenerate and Continue once it has ended."""
    view = discord.ui.View(timeout=None)
    view.add_item(ReplyButton("stop", owner, disabled=not streaming))
    view.add_item(ReplyButton("regenerate", owner, disabled=streaming))
    view.add_item(ReplyButton("continue", owner, disabled=streaming))
    return view


SceneAction = Literal["stop", "regenerate"]


class SceneButton(
    AccessChecked,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"airoboros:scene:(?P<action>stop|regenerate):(?P<thread>\d+)",
):
    """A scene turn's button, on the bot's 🎭 message that heads the turn; dispatched as ``scene_button``."""

    def __init__(self, action: SceneAction, thread_id: int) -> None:
        label, style = _LABELS[action]
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"airoboros:scene:{action}:{thread_id}"))
        self.action: SceneAction = action
        self.thread_id = thread_id

    def reaches_model(self) -> bool:
        """Regenerate and Continue ask the model again (they count against the rate limit); Stop does not."""
        return self.action != "stop"

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SceneButton:
        return cls(cast(SceneAction, match["action"]), int(match["thread"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch("scene_button", interaction, self.action, self.thread_id)


def scene_view(thread_id: int, *, streaming: bool) -> discord.ui.View:
    """Stop while the turn streams; Regenerate once it has ended."""
    view = discord.ui.View(timeout=None)
    view.add_item(SceneButton("stop" if streaming else "regenerate", thread_id))
    return view
