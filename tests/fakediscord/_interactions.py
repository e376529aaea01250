"""Interactions: the payload a user's click or slash command produces, and what Discord does with the answers.

Modelled rules: an interaction must be acknowledged within the deadline (3 s) or its
callback gets 404 10062 Unknown interaction; it can be acknowledged once (400 40060);
followups and ``@original`` work only after the acknowledgement and for 15 minutes; the
first followup after a "thinking" defer replaces the loading message instead of posting a
new one; ephemeral messages are never dispatched over the gateway.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _payloads
from ._errors import ApiError, invalid_form, unknown
from ._models import (
    CallbackType,
    ChannelType,
    CommandType,
    FakeChannel,
    FakeMessage,
    FakeUser,
    InteractionType,
    MessageFlag,
    MessageType,
)

if TYPE_CHECKING:
    from ._state import FakeState

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
_MESSAGE_CALLBACKS = (CallbackType.CHANNEL_MESSAGE_WITH_SOURCE, CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE)
_UPDATE_CALLBACKS = (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE)


class InteractionHandle:
    """One interaction the fake dispatched, and everything the bot answered to it.

    Returned by ``FakeDiscord.invoke_slash``, ``click_button`` and the context-menu helpers.
    """

    def __init__(
        self,
        state: FakeState,
        *,
        type: int,
        data: dict[str, Any],
        user: FakeUser,
        channel: FakeChannel,
        message: FakeMessage | None = None,
        command_name: str | None = None,
        command_type: int | None = None,
    ) -> None:
        self._state = state
        self.id = state.snowflake()
        self.token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(64)
        self.type = type
        self.data = data
        self.user = user
        self.channel = channel
        self.guild_id = channel.guild_id
        self.component_message_id = message.id if message is not None else None
        self.command_name = command_name
        self.command_type = command_type
        self.created_at = time.monotonic()
        self.callback: dict[str, Any] | None = None
        """The accepted callback body (``{"type": ..., "data": ...}``), once the bot answered."""
        self.callback_at: float | None = None
        self.rejected_callbacks: list[tuple[dict[str, Any], ApiError]] = []
        """Callbacks refused (too late, or a second acknowledgement), with the error answered."""
        self.original_message_id: int | None = None
        self.followup_ids: list[int] = []

    # -- what tests read -----------------------------------------------------------------

    @property
    def acknowledged(self) -> bool:
        """Whether a callback was accepted."""
        return self.callback is not None

    @property
    def ack_latency(self) -> float | None:
        """Seconds from dispatch to the accepted callback."""
        return None if self.callback_at is None else self.callback_at - self.created_at

    @property
    def callback_type(self) -> int | None:
        """The accepted callback's type (4 message, 5 deferred, 6 deferred update, 7 update, 9 modal...)."""
        return None if self.callback is None else int(self.callback["type"])

    @property
    def original(self) -> dict[str, Any] | None:
        """The response message (``@original``) as it is now, with its ``edits``; None if there is none."""
        if self.original_message_id is None or self.original_message_id not in self._state.messages:
            return None
        return self._state.message_dict(self._state.messages[self.original_message_id])

    @property
    def followups(self) -> list[dict[str, Any]]:
        """Followup messages, oldest first, as they are now."""
        return [
            self._state.message_dict(self._state.messages[i]) for i in self.followup_ids if i in self._state.messages
        ]

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9), if any."""
        if self.callback is None or self.callback["type"] != CallbackType.MODAL:
            return None
        return dict(self.callback.get("data") or {})

    async def wait_callback(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait for the bot's accepted callback and return its body."""
        return await self._state.wait_for(lambda: self.callback, timeout, f"callback for interaction {self.id}")

    async def wait_original(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Wait until ``@original`` exists (and satisfies ``predicate``) and return it."""

        def ready() -> dict[str, Any] | None:
            original = self.original
            if original is None or (predicate is not None and not predicate(original)):
                return None
            return original

        return await self._state.wait_for(ready, timeout, f"original response of interaction {self.id}")

    async def wait_followups(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until at least ``count`` followups exist and return them all."""

        def ready() -> list[dict[str, Any]] | None:
            followups = self.followups
            return followups if len(followups) >= count else None

        return await self._state.wait_for(ready, timeout, f"{count} followup(s) of interaction {self.id}")

    # -- payloads ------------------------------------------------------------------------

    def payload(self) -> dict[str, Any]:
        """The INTERACTION_CREATE payload."""
        state = self._state
        channel_data = _payloads.channel_payload(state, self.channel)
        payload: dict[str, Any] = {
            "id": str(self.id),
            "application_id": str(state.application_id),
            "type": self.type,
            "data": self.data,
            "token": self.token,
            "version": 1,
            "channel_id": str(self.channel.id),
            "channel": channel_data,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if self.guild_id is not None:
            guild = state.guilds[self.guild_id]
            payload |= {
                "guild_id": str(guild.id),
                "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "member": _payloads.member_payload(state, guild.members[self.user.id], with_permissions=True),
                "app_permissions": str(state.permissions_in(self.channel, state.bot_user.id)),
                "authorizing_integration_owners": {"0": str(guild.id)},
                "context": 0,
            }
        else:
            payload |= {
                "user": _payloads.user_payload(self.user),
                "app_permissions": "0",
                "authorizing_integration_owners": {"0": str(self.user.id)},
                "context": 1 if self.channel.type == ChannelType.DM else 2,
            }
        if self.component_message_id is not None:
            payload["message"] = _payloads.message_payload(state, state.messages[self.component_message_id])
        return payload

    def metadata(self) -> dict[str, Any]:
        """The ``interaction_metadata`` the response messages carry."""
        metadata: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "user": _payloads.user_payload(self.user),
            "authorizing_integration_owners": {"0": str(self.guild_id or self.user.id)},
        }
        if self.command_name is not None:
            metadata["name"] = self.command_name
            metadata["command_type"] = self.command_type
        if self.component_message_id is not None:
            metadata["interacted_message_id"] = str(self.component_message_id)
        if self.original_message_id is not None:
            metadata["original_response_message_id"] = str(self.original_message_id)
        return metadata


# -- the REST side -------------------------------------------------------------------------


def accept_callback(
    state: FakeState, handle: InteractionHandle, body: dict[str, Any], files: list[tuple[str, bytes, str | None]]
) -> dict[str, Any]:
    """Apply ``POST /interactions/{id}/{token}/callback`` and return the ``with_response`` body."""
    try:
        response = _apply_callback(state, handle, body, files)
    except ApiError as error:
        handle.rejected_callbacks.append((body, error))
        state.changed()
        raise
    handle.callback = body
    handle.callback_at = time.monotonic()
    state.changed()
    return response


def _apply_callback(
    state: FakeState, handle: InteractionHandle, body: dict[str, Any], files: list[tuple[str, bytes, str | None]]
) -> dict[str, Any]:
    if handle.callback is not None:
        raise ApiError(400, 40060, "Interaction has already been acknowledged.")
    if time.monotonic() - handle.created_at > state.interaction_deadline:
        raise unknown("interaction")
    callback_type = body.get("type")
    data = dict(body.get("data") or {})
    is_component = handle.type in (InteractionType.MESSAGE_COMPONENT, InteractionType.MODAL_SUBMIT)
    resource: dict[str, Any] = {"type": callback_type}
    interaction: dict[str, Any] = {"id": str(handle.id), "type": handle.type}
    answerable = (InteractionType.APPLICATION_COMMAND, InteractionType.MESSAGE_COMPONENT, InteractionType.MODAL_SUBMIT)
    if callback_type in _MESSAGE_CALLBACKS and handle.type in answerable:
        ephemeral = bool(int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
        if callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            data = {"flags": MessageFlag.LOADING | (MessageFlag.EPHEMERAL if ephemeral else 0)}
        message = state.create_message(
            handle.channel,
            state.bot_user,
            data,
            files=files,
            type=_response_message_type(handle),
            interaction=handle,
            allow_ephemeral=True,
        )
        handle.original_message_id = message.id
        interaction |= {
            "response_message_id": str(message.id),
            "response_message_loading": callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
            "response_message_ephemeral": ephemeral,
        }
        resource["message"] = _payloads.message_payload(state, message)
    elif callback_type in _UPDATE_CALLBACKS and is_component and handle.component_message_id is not None:
        message = state.message(None, handle.component_message_id)
        if callback_type == CallbackType.UPDATE_MESSAGE:
            state.edit_message(message, data)
        handle.original_message_id = message.id
        interaction["response_message_id"] = str(message.id)
        resource["message"] = _payloads.message_payload(state, message)
    elif callback_type == CallbackType.MODAL and handle.type in (
        InteractionType.APPLICATION_COMMAND,
        InteractionType.MESSAGE_COMPONENT,
    ):
        _check_modal(data)
    elif callback_type == CallbackType.AUTOCOMPLETE_RESULT and handle.type == InteractionType.AUTOCOMPLETE:
        pass
    else:
        reason = f"Callback type {callback_type} is not valid for interaction type {handle.type}"
        raise invalid_form("type", "INTERACTION_RESPONSE_TYPE_INVALID", reason)
    return {"interaction": interaction, "resource": resource}


def _check_modal(data: dict[str, Any]) -> None:
    title = data.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= 45:
        raise invalid_form("data.title", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length.")
    if not data.get("custom_id") or not data.get("components"):
        raise invalid_form("data.components", "BASE_TYPE_REQUIRED", "This field is required")


def _response_message_type(handle: InteractionHandle) -> int:
    if handle.type != InteractionType.APPLICATION_COMMAND:
        return MessageType.DEFAULT
    if handle.command_type == CommandType.CHAT_INPUT:
        return MessageType.CHAT_INPUT_COMMAND
    return MessageType.CONTEXT_MENU_COMMAND


def live_handle(state: FakeState, token: str) -> InteractionHandle:
    """The acknowledged, unexpired interaction a webhook token belongs to, or a 404 Unknown Webhook."""
    for handle in state.interactions.values():
        if handle.token == token:
            break
    else:
        raise unknown("webhook")
    if handle.callback is None or time.monotonic() - handle.created_at > state.interaction_token_ttl:
        raise unknown("webhook")
    return handle


def send_followup(
    state: FakeState, handle: InteractionHandle, body: dict[str, Any], files: list[tuple[str, bytes, str | None]]
) -> FakeMessage:
    """``POST /webhooks/{app}/{token}``: a followup; the first one after a thinking defer fills the placeholder."""
    if handle.original_message_id is not None and handle.original_message_id in state.messages:
        original = state.messages[handle.original_message_id]
        if _payloads.is_loading(original):
            return state.edit_message(original, body, files=files, clear_loading=True)
    message = state.create_message(
        handle.channel, state.bot_user, body, files=files, interaction=handle, allow_ephemeral=True
    )
    handle.followup_ids.append(message.id)
    state.changed()
    return message


def handle_message(state: FakeState, handle: InteractionHandle, message_id: str) -> FakeMessage:
    """The message ``@original`` or a followup id names, or a 404 Unknown Message."""
    if message_id == "@original":
        if handle.original_message_id is None or handle.original_message_id not in state.messages:
            raise unknown("message")
        return state.messages[handle.original_message_id]
    known = {handle.original_message_id, *handle.followup_ids}
    if not message_id.isdigit() or int(message_id) not in known or int(message_id) not in state.messages:
        raise unknown("message")
    return state.messages[int(message_id)]


def edit_handle_message(
    state: FakeState, message: FakeMessage, body: dict[str, Any], *, files: list[tuple[str, bytes, str | None]]
) -> FakeMessage:
    """``PATCH .../messages/@original|{id}``; editing a loading placeholder turns it into the answer."""
    return state.edit_message(message, body, files=files, clear_loading=_payloads.is_loading(message))
