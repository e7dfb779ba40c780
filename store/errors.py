"""Errors that carry the request field they are about, so the API can name it in a 4xx."""

from __future__ import annotations


class InputError(Exception):
    """Input that cannot be accepted. `field` is a dotted path such as `search_space.dropout_rate.max`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class HeaderError(InputError):
    """A request header that cannot be accepted; `field` is its name in lower case (`idempotency-key`)."""


class NotFoundError(Exception):
    """The object asked for does not exist."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} not found")
        self.what = what
        self.ident = ident


class StateError(Exception):
    """The object is in a state that does not allow the operation (maps to 409)."""


class TooLargeError(InputError):
    """The input is bigger than a configured limit (maps to 413)."""


class LimitError(Exception):
    """The caller has as much running as they may have; they may try again later (maps to 429)."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class AuthError(Exception):
    """No token, or one that is not valid (maps to 401)."""
