"""Application commands: validating a sync like Discord, and building invocation data from the synced schema.

A test invokes ``/source add url:...`` as ``invoke_slash("source add", {"url": ...})``; the
fake walks the *registered* schema, so a test cannot call an option the bot never synced,
and option values are typed and checked as Discord's client would.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from . import _payloads
from ._errors import invalid_form
from ._models import CommandType, FakeChannel, FakeGuild, FakeRole, FakeUser, OptionType, RegisteredCommand

if TYPE_CHECKING:
    from ._state import FakeState

_CHAT_INPUT_NAME = re.compile(r"^[-_\w]{1,32}$")
_MAX_OPTIONS = 25
_MAX_CHOICES = 25
_VALUE_TYPES = {
    OptionType.STRING: (str,),
    OptionType.INTEGER: (int,),
    OptionType.NUMBER: (int, float),
    OptionType.BOOLEAN: (bool,),
}


# -- sync ----------------------------------------------------------------------------------


def register_commands(
    state: FakeState, guild_id: int | None, payloads: Any, existing: list[RegisteredCommand]
) -> list[RegisteredCommand]:
    """Validate a bulk overwrite and return the stored commands (ids kept for unchanged names, as Discord does)."""
    if not isinstance(payloads, list):
        raise invalid_form("_root", "BASE_TYPE_ARRAY", "Must be an array.")
    old_ids = {(c.name, c.type): c.id for c in existing}
    seen: set[tuple[str, int]] = set()
    stored: list[RegisteredCommand] = []
    for index, payload in enumerate(payloads):
        if not isinstance(payload, dict):
            raise invalid_form(str(index), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        command_type = int(payload.get("type") or CommandType.CHAT_INPUT)
        _check_command(payload, command_type, str(index))
        key = (payload["name"], command_type)
        if key in seen:
            duplicate = f"Application command names must be unique ({payload['name']})"
            raise invalid_form(f"{index}.name", "APPLICATION_COMMANDS_DUPLICATE_NAME", duplicate)
        seen.add(key)
        command_id = old_ids.get(key) or state.snowflake()
        body = {
            "id": str(command_id),
            "application_id": str(state.application_id),
            "version": str(state.snowflake()),
            "type": command_type,
            "name": payload["name"],
            "description": payload.get("description") or "",
            "options": payload.get("options") or [],
            "default_member_permissions": payload.get("default_member_permissions"),
            "dm_permission": payload.get("dm_permission", True),
            "contexts": payload.get("contexts"),
            "integration_types": payload.get("integration_types") or [0],
            "nsfw": bool(payload.get("nsfw", False)),
        }
        for key_name in ("name_localizations", "description_localizations"):
            if payload.get(key_name):
                body[key_name] = payload[key_name]
        if guild_id is not None:
            body["guild_id"] = str(guild_id)
        stored.append(RegisteredCommand(body, guild_id))
    return stored


def _check_command(payload: dict[str, Any], command_type: int, path: str) -> None:
    name = payload.get("name")
    if command_type == CommandType.CHAT_INPUT:
        _check_name(name, f"{path}.name")
        _check_description(payload.get("description"), f"{path}.description")
        _check_options(payload.get("options") or [], f"{path}.options", depth=0)
    elif command_type in (CommandType.USER, CommandType.MESSAGE):
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise invalid_form(f"{path}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
        if payload.get("description"):
            raise invalid_form(
                f"{path}.description", "CONTEXT_MENU_DESCRIPTION", "Context menu commands cannot have a description"
            )
        if payload.get("options"):
            raise invalid_form(f"{path}.options", "CONTEXT_MENU_OPTIONS", "Context menu commands cannot have options")
    else:
        raise invalid_form(f"{path}.type", "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3}.")


def _check_name(name: Any, path: str) -> None:
    if not isinstance(name, str) or not _CHAT_INPUT_NAME.match(name) or name != name.lower():
        raise invalid_form(path, "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {name!r}")


def _check_description(description: Any, path: str) -> None:
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        raise invalid_form(path, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")


def _check_options(options: Any, path: str, depth: int) -> None:
    if not isinstance(options, list) or len(options) > _MAX_OPTIONS:
        raise invalid_form(path, "BASE_TYPE_MAX_LENGTH", f"Must be {_MAX_OPTIONS} or fewer in length.")
    kinds = {int(o.get("type", 0)) in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP) for o in options}
    if len(kinds) > 1:
        raise invalid_form(
            path,
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command and sub-command group option types are mutually exclusive to all other types",
        )
    names: set[str] = set()
    seen_optional = False
    for index, option in enumerate(options):
        where = f"{path}.{index}"
        option_type = int(option.get("type", 0))
        _check_name(option.get("name"), f"{where}.name")
        _check_description(option.get("description"), f"{where}.description")
        if option["name"] in names:
            raise invalid_form(
                f"{where}.name", "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique"
            )
        names.add(option["name"])
        if option_type == OptionType.SUB_COMMAND_GROUP:
            if depth > 0:
                raise invalid_form(f"{where}.type", "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Groups cannot nest")
            subs = option.get("options") or []
            if any(int(s.get("type", 0)) != OptionType.SUB_COMMAND for s in subs):
                raise invalid_form(
                    f"{where}.options", "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Groups hold only sub-commands"
                )
            _check_options(subs, f"{where}.options", depth + 1)
        elif option_type == OptionType.SUB_COMMAND:
            if depth > 1:
                raise invalid_form(f"{where}.type", "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Too deeply nested")
            _check_options(option.get("options") or [], f"{where}.options", depth + 2)
        elif OptionType.STRING <= option_type <= OptionType.ATTACHMENT:
            if option.get("required"):
                if seen_optional:
                    raise invalid_form(
                        f"{where}.required",
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
            choices = option.get("choices") or []
            if len(choices) > _MAX_CHOICES:
                raise invalid_form(
                    f"{where}.choices", "BASE_TYPE_MAX_LENGTH", f"Must be {_MAX_CHOICES} or fewer in length."
                )
            for choice_index, choice in enumerate(choices):
                if not 1 <= len(str(choice.get("name", ""))) <= 100:
                    raise invalid_form(
                        f"{where}.choices.{choice_index}.name",
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 100 in length.",
                    )
        else:
            raise invalid_form(f"{where}.type", "BASE_TYPE_CHOICES", f"Unknown option type {option_type}")


# -- invocation ----------------------------------------------------------------------------


def chat_input_data(
    state: FakeState,
    command: RegisteredCommand,
    path: list[str],
    values: dict[str, Any],
    guild: FakeGuild | None,
) -> dict[str, Any]:
    """The ``data`` of an APPLICATION_COMMAND interaction for ``/name sub... key:value``."""
    resolved: dict[str, dict[str, Any]] = {}
    schema: list[dict[str, Any]] = command.payload.get("options") or []
    wrappers: list[dict[str, Any]] = []
    for name in path:
        sub = next(
            (
                o
                for o in schema
                if o["name"] == name and o["type"] in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP)
            ),
            None,
        )
        if sub is None:
            raise LookupError(f"/{command.name} has no sub-command {name!r}; it has {[o['name'] for o in schema]}")
        wrappers.append({"name": name, "type": sub["type"], "options": []})
        schema = sub.get("options") or []
    if any(o["type"] in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP) for o in schema):
        raise LookupError(f"/{' '.join([command.name, *path])} needs a sub-command: {[o['name'] for o in schema]}")
    options = _leaf_options(
        state, schema=schema, values=values, guild=guild, resolved=resolved, where=f"/{' '.join([command.name, *path])}"
    )
    for wrapper in reversed(wrappers):
        wrapper["options"] = options
        options = [wrapper]
    data: dict[str, Any] = {
        "id": str(command.id),
        "name": command.name,
        "type": CommandType.CHAT_INPUT,
        "options": options,
    }
    if resolved:
        data["resolved"] = resolved
    if command.guild_id is not None:
        data["guild_id"] = str(command.guild_id)
    return data


def context_menu_data(
    state: FakeState, command: RegisteredCommand, target: dict[str, Any], target_id: int, kind: str
) -> dict[str, Any]:
    """The ``data`` of a user or message context-menu invocation; ``target`` is the resolved object."""
    resolved: dict[str, Any] = {kind: {str(target_id): target}}
    data: dict[str, Any] = {
        "id": str(command.id),
        "name": command.name,
        "type": command.type,
        "target_id": str(target_id),
        "resolved": resolved,
    }
    if command.guild_id is not None:
        data["guild_id"] = str(command.guild_id)
    return data


def _leaf_options(
    state: FakeState,
    *,
    schema: list[dict[str, Any]],
    values: dict[str, Any],
    guild: FakeGuild | None,
    resolved: dict[str, dict[str, Any]],
    where: str,
) -> list[dict[str, Any]]:
    by_name = {o["name"]: o for o in schema}
    unknown_names = sorted(set(values) - set(by_name))
    if unknown_names:
        raise LookupError(f"{where} has no option(s) {unknown_names}; it has {sorted(by_name)}")
    missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
    if missing:
        raise ValueError(f"{where}: required option(s) {missing} not given")
    options = []
    for option in schema:  # Discord sends options in schema order
        if option["name"] not in values:
            continue
        value = _option_value(
            state, option=option, value=values[option["name"]], guild=guild, resolved=resolved, where=where
        )
        options.append({"name": option["name"], "type": option["type"], "value": value})
    return options


def _option_value(
    state: FakeState,
    *,
    option: dict[str, Any],
    value: Any,
    guild: FakeGuild | None,
    resolved: dict[str, dict[str, Any]],
    where: str,
) -> Any:
    option_type = option["type"]
    label = f"{where} option {option['name']!r}"
    if option_type in _VALUE_TYPES:
        expected = _VALUE_TYPES[option_type]
        if not isinstance(value, expected) or (option_type != OptionType.BOOLEAN and isinstance(value, bool)):
            raise TypeError(f"{label} takes {expected}, not {value!r}")
        choices = option.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"{label}: {value!r} is not one of the choices {[c['value'] for c in choices]}")
        _check_bounds(option, value, label)
        return value
    if option_type == OptionType.USER or (option_type == OptionType.MENTIONABLE and not isinstance(value, FakeRole)):
        user = value if isinstance(value, FakeUser) else state.users[int(value)]
        resolved.setdefault("users", {})[str(user.id)] = _payloads.user_payload(user)
        if guild is not None and user.id in guild.members:
            member = _payloads.member_payload(state, guild.members[user.id], with_user=False, with_permissions=True)
            resolved.setdefault("members", {})[str(user.id)] = member
        return str(user.id)
    if option_type in (OptionType.ROLE, OptionType.MENTIONABLE):
        role = value if isinstance(value, FakeRole) else guild.roles[int(value)] if guild else None
        if role is None:
            raise ValueError(f"{label}: roles exist only in guilds")
        resolved.setdefault("roles", {})[str(role.id)] = _payloads.role_payload(role)
        return str(role.id)
    if option_type == OptionType.CHANNEL:
        channel = value if isinstance(value, FakeChannel) else state.channels[int(value)]
        allowed_types = option.get("channel_types")
        if allowed_types and channel.type not in allowed_types:
            raise ValueError(f"{label}: channel type {channel.type} is not one of {allowed_types}")
        payload = _payloads.channel_payload(state, channel)
        payload["permissions"] = (
            str(state.permissions(channel.guild_id, state.bot_user.id)) if channel.guild_id else "0"
        )
        resolved.setdefault("channels", {})[str(channel.id)] = payload
        return str(channel.id)
    if option_type == OptionType.ATTACHMENT:
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bytes)):
            raise TypeError(f"{label} takes a (filename, bytes) tuple")
        attachment_id = state.snowflake()
        state.attachment_files[attachment_id] = value[1]
        base = state.api_base.rsplit("/api/", 1)[0]
        url = f"{base}/attachments/0/{attachment_id}/{value[0]}"
        attachment = {
            "id": str(attachment_id),
            "filename": value[0],
            "size": len(value[1]),
            "url": url,
            "proxy_url": url,
        }
        resolved.setdefault("attachments", {})[str(attachment_id)] = attachment
        return str(attachment_id)
    raise TypeError(f"{label}: unsupported option type {option_type}")


def _check_bounds(option: dict[str, Any], value: Any, label: str) -> None:
    size = len(value) if isinstance(value, str) else value
    low = option.get("min_length" if isinstance(value, str) else "min_value")
    high = option.get("max_length" if isinstance(value, str) else "max_value")
    if isinstance(value, str) and len(value) > 6000:
        raise ValueError(f"{label}: Discord caps option values at 6000 characters")
    if low is not None and size < low:
        raise ValueError(f"{label}: {value!r} is below the minimum {low}")
    if high is not None and size > high:
        raise ValueError(f"{label}: {value!r} is above the maximum {high}")
