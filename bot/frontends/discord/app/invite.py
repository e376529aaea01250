"""``python -m bot invite-url``: the OAuth2 link that adds the bot with exactly the permissions it uses.

The permissions come from the lists the cogs check at run time (:mod:`~bot.frontends.discord.ui.feedback`),
so the invite and the checks cannot drift apart. Not asked for, because the bot never needs them:
Manage Messages (it deletes only its own messages), Manage Threads (it archives only threads it
created, which a thread's owner may do), Add Reactions (it adds none).
"""

from __future__ import annotations

import discord

from bot.frontends.discord.ui.feedback import (
    TO_ANSWER_IN_A_CHANNEL,
    TO_ANSWER_IN_A_THREAD,
    TO_OPEN_A_THREAD,
    TO_POST_EMBEDS_AND_FILES,
    TO_STAGE_SCENES,
)

SCOPES = ("bot", "applications.commands")


def invite_permissions(*, roleplay: bool) -> discord.Permissions:
    """Every permission an enabled feature checks for; Manage Webhooks only with roleplay."""
    needed = {*TO_OPEN_A_THREAD, *TO_ANSWER_IN_A_THREAD, *TO_ANSWER_IN_A_CHANNEL, *TO_POST_EMBEDS_AND_FILES}
    if roleplay:
        needed.update(TO_STAGE_SCENES)
    return discord.Permissions(**dict.fromkeys(needed, True))


def invite_url(client_id: int, *, roleplay: bool) -> str:
    """``https://discord.com/oauth2/authorize?client_id=...&scope=bot+applications.commands&permissions=N``."""
    return discord.utils.oauth_url(client_id, permissions=invite_permissions(roleplay=roleplay), scopes=SCOPES)
