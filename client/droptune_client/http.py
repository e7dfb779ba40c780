"""HTTP with the API's error shape turned into `ApiError`, and retries for what is worth retrying."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from droptune_client.errors import ApiError, ConnectionFailed, describe

# Worth asking again: the service is busy (429: too many active jobs, with Retry-After) or briefly
# unavailable (503: database or predictor); a gateway in front of it may say 502 or 504, and may say
# so after the service acted (a 504 when the answer was slow to come back).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Methods safe to send twice when the first try may have reached the server (a read timed out).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Sent with a create (`request(..., once=True)`): the server answers a repeat of it with the first answer,
# and 409 to one that raced a call it could not answer yet (sent again, it gets that call's answer).
IDEMPOTENCY_KEY = "Idempotency-Key"


def retry_after(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds (the delta form; the service sends no dates)."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Http:
    """An httpx client that retries with exponential backoff and raises `ApiError` for 4xx and 5xx.

    Every request is retried after 429, 502, 503 and 504, and when the server could not be connected
    to. A 502 or 504 from a gateway may come after the service acted, so a POST that creates something
    is sent with `once=True`: it carries an `Idempotency-Key` of its own, the same on each try, and the
    service answers a repeat with the first answer instead of creating again. Such a POST is also
    retried after a read timed out, and after a 409 (it raced a repeat still in progress). Any other
    POST is sent again as it is after 429 and 5xx (a cancel that had worked may then answer 409), but
    not after a read timed out. `attempts` bounds the tries; Retry-After is honoured up to `max_delay`.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"User-Agent": "droptune-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url
        self.client = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep

    def close(self) -> None:
        self.client.close()

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        hinted = retry_after(response) if response is not None else None
        if hinted is not None:
            return min(hinted, self.max_delay)
        # Full jitter: clients retrying together do not come back together.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def request(self, method: str, path: str, *, once: bool = False, **kwargs: Any) -> httpx.Response:
        """`once`: send an Idempotency-Key, one for this call and the same on each of its tries."""
        what = f"{method} {path}"
        retried = RETRY_STATUSES
        if once:
            kwargs["headers"] = {**kwargs.get("headers", {}), IDEMPOTENCY_KEY: str(uuid.uuid4())}
            retried = RETRY_STATUSES | {409}
        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                safe = once or method in IDEMPOTENT or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if last or not safe:
                    raise ConnectionFailed(f"cannot reach {self.url} ({what}): {exc or type(exc).__name__}") from exc
                self.sleep(self.delay(attempt, None))
                continue
            if response.status_code in retried and not last:
                self.sleep(self.delay(attempt, response))
                continue
            if response.status_code >= 400:
                raise error_of(response, what)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def json(self, method: str, path: str, *, once: bool = False, **kwargs: Any) -> Any:
        return self.request(method, path, once=once, **kwargs).json()

    def download(self, path: str, target: Any, params: dict[str, Any] | None = None) -> str | None:
        """Stream a file into the open binary `target`; returns the server's file name, if it gave one.

        Not retried half-way: a failed download raises, and the caller starts it again."""
        what = f"GET {path}"
        try:
            with self.client.stream("GET", path, params=params, timeout=600) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response, what)
                for chunk in response.iter_bytes():
                    target.write(chunk)
                disposition = response.headers.get("content-disposition", "")
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.url} ({what}): {exc or type(exc).__name__}") from exc
        marker = 'filename="'
        if marker in disposition:
            return disposition.split(marker, 1)[1].split('"', 1)[0] or None
        return None


def error_of(response: httpx.Response, what: str) -> ApiError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail") if isinstance(body, dict) else None
    return ApiError(
        response.status_code, describe(response.status_code, body, what), detail if isinstance(detail, list) else None
    )
