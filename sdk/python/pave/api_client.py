"""A small client of the task execution API (docs/execution-api.md), on
``urllib.request`` only: bearer token, JSON bodies, bounded timeouts, and a
few retries when the connection itself fails."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ApiError(Exception):
    """The API answered with an error status; ``message`` is its ``error`` text."""

    def __init__(self, status: int, message: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path} failed with HTTP {status}: {message}")
        self.status = status
        self.message = message


class ExecutionApi:
    """The execution API of one attempt."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.5) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, parsed JSON or None) of a 2xx answer; ``ApiError`` otherwise."""
        data = None if body is None else json.dumps(body, allow_nan=False).encode("utf-8")
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        delay = self.backoff
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                    return resp.status, (json.loads(raw) if raw.strip() else None)
            except urllib.error.HTTPError as e:
                raw = e.read()
                if e.code in (502, 503, 504) and attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise ApiError(e.code, _error_text(raw, e.reason), method, path) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                if attempt >= self.retries:
                    raise ConnectionError(
                        f"cannot reach the pave execution API at {self.base_url} ({method} {path}): {e}"
                    ) from None
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    # -- endpoints -----------------------------------------------------------------
    def get_context(self) -> dict[str, Any]:
        return self.request("GET", "/ti/context")[1]

    def get_xcom(self, task_id: str, key: str, map_index: int | None = None) -> tuple[bool, Any]:
        """(found, value) of an XCom of this run; not found is (False, None)."""
        query = {"key": key}
        if map_index is not None:
            query["map_index"] = str(map_index)
        path = f"/xcom/{urllib.parse.quote(task_id, safe='')}?{urllib.parse.urlencode(query)}"
        try:
            body = self.request("GET", path)[1]
        except ApiError as e:
            if e.status == 404:
                return False, None
            raise
        return True, (body or {}).get("value")

    def put_xcom(self, key: str, value: Any) -> None:
        self.request("PUT", f"/xcom/{urllib.parse.quote(key, safe='')}", {"value": value})

    def render(self, template: str) -> str:
        return self.request("POST", "/render", {"template": template})[1]["rendered"]


def _error_text(raw: bytes, reason: Any) -> str:
    try:
        body = json.loads(raw)
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])
    except ValueError:
        pass
    text = raw.decode("utf-8", errors="replace").strip()
    return text or str(reason)
