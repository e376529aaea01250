"""The JSON errors the fake answers with, shaped like Discord's.

``ApiError`` carries an HTTP status, a Discord error code and message, and for 50035 the
nested ``errors`` object discord.py flattens into its exception text.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A Discord API error; the REST layer turns it into a JSON response."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """The JSON body Discord sends for this error."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def invalid_form(path: str, code: str, message: str) -> ApiError:
    """A 400 "Invalid Form Body" (50035) naming one field; ``path`` is dotted, e.g. ``options.0.name``."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path.split(".")):
        errors = {key: errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


def unknown(kind: str) -> ApiError:
    """A 404 for an unknown resource of ``kind`` ("channel", "message", ...), with Discord's code."""
    code, message = _UNKNOWN[kind]
    return ApiError(404, code, message)


_UNKNOWN = {
    "application": (10002, "Unknown Application"),
    "channel": (10003, "Unknown Channel"),
    "guild": (10004, "Unknown Guild"),
    "member": (10007, "Unknown Member"),
    "message": (10008, "Unknown Message"),
    "user": (10013, "Unknown User"),
    "webhook": (10015, "Unknown Webhook"),
    "interaction": (10062, "Unknown interaction"),
    "application command": (10063, "Unknown application command"),
}


def unauthorized() -> ApiError:
    """The 401 for a missing or wrong bot token."""
    return ApiError(401, 0, "401: Unauthorized")


def route_not_found() -> ApiError:
    """The 404 for a path the API does not have."""
    return ApiError(404, 0, "404: Not Found")
