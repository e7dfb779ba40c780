"""Errors that carry the request field they are about, so the API can name it in a 4xx; and the rules
behind such errors that the OpenAPI schema can only list (`Rule`)."""

from __future__ import annotations

from dataclasses import dataclass


class InputError(Exception):
    """Input that cannot be accepted. `field` is a dotted path such as `search_space.dropout_rate.max`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class HeaderError(InputError):
    """A request header that cannot be accepted; `field` is its name in lower case (`idempotency-key`)."""


class QueryError(InputError):
    """A query parameter that cannot be accepted; `field` is its name (`format`)."""


@dataclass(frozen=True)
class Rule:
    """A rule on input that JSON Schema cannot state (it spans fields, or needs stored data or a service's
    settings), so data the schema allows may still get a 422: `/openapi.json` lists each under its
    operation's 422 response (`x-rules`), where the refusal's `loc` is `field` or a field inside it."""

    field: str  # a dotted path, as InputError's
    rule: str
    where: str = "body"  # or "header": the first part of the error's `loc`


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
