"""A small client of the task execution API (docs/execution-api.md): bearer
token, JSON bodies, bounded timeouts, one kept-alive connection for all the
requests of an attempt, and a few retries when the connection itself fails.

Plain ``http://`` URLs (pave's own API, on loopback) are spoken over a
socket by the few lines of HTTP/1.1 below: importing ``http.client`` (and
with it ``email``, ``ssl`` and ``urllib.request``) costs a fresh interpreter
about 25 ms, more than a no-op task's whole attempt in a pre-forked one.
Other schemes (``https://``) go through ``http.client``, imported then.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


#: Longest response head (status line and headers) read, in bytes.
MAX_HEAD = 64 * 1024


class ApiError(Exception):
    """The API answered with an error status; ``message`` is its ``error`` text."""

    def __init__(self, status: int, message: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path} failed with HTTP {status}: {message}")
        self.status = status
        self.message = message


class _Closed(ConnectionError):
    """A kept-alive connection was closed by the server before it answered."""


class _Http:
    """One HTTP/1.1 connection to ``host:port``, kept alive between requests."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.file: Any = None
        self.used = False  # a request was answered on this connection already

    def close(self) -> None:
        for thing in (self.file, self.sock):
            try:
                if thing is not None:
                    thing.close()
            except OSError:
                pass
        self.sock, self.file, self.used = None, None, False

    def request(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> tuple[int, str, bytes]:
        """(status, reason, body) of one exchange; reconnects once if a reused connection was closed."""
        if self.sock is None:
            self._connect()
        reused = self.used
        try:
            return self._exchange(method, target, headers, body)
        except (_Closed, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused:
                raise
        self._connect()
        return self._exchange(method, target, headers, body)

    def _connect(self) -> None:
        # An ASCII host as bytes: a str would be IDNA-encoded first, which
        # imports `encodings.idna`, `stringprep` and `unicodedata` (ms).
        host: str | bytes = self.host.encode("ascii") if self.host.isascii() else self.host
        sock = socket.create_connection((host, self.port), timeout=self.timeout)  # type: ignore[arg-type]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.sock, self.file, self.used = sock, sock.makefile("rb"), False

    def _exchange(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> tuple[int, str, bytes]:
        assert self.sock is not None and self.file is not None
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(head + (body or b""))
        while True:
            status, reason, response_headers = self._read_head()
            if status >= 200:
                break  # 1xx: an interim answer, the real one follows
        data, reusable = self._read_body(method, status, response_headers)
        if reusable and response_headers.get("connection", "").lower() != "close":
            self.used = True
        else:
            self.close()
        return status, reason, data

    def _read_head(self) -> tuple[int, str, dict[str, str]]:
        status_line = self.file.readline(MAX_HEAD)
        if not status_line:
            raise _Closed("the execution API closed the connection")
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP answer from the execution API: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        size = len(status_line)
        while True:
            line = self.file.readline(MAX_HEAD)
            size += len(line)
            if not line:
                raise ConnectionError("the execution API closed the connection in the middle of an answer")
            if line in (b"\r\n", b"\n") or size > MAX_HEAD:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    def _read_body(self, method: str, status: int, headers: dict[str, str]) -> tuple[bytes, bool]:
        """The body, and whether the connection can carry another request."""
        if method == "HEAD" or status in (204, 304):
            return b"", True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = self.file.readline(MAX_HEAD)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ConnectionError("a malformed chunk from the execution API") from None
                if size == 0:
                    while self.file.readline(MAX_HEAD) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks), True
                chunks.append(self._read_exactly(size))
                self.file.readline(MAX_HEAD)
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise ConnectionError("a malformed Content-Length from the execution API") from None
            return self._read_exactly(length), True
        return self.file.read(), False  # delimited by the end of the connection

    def _read_exactly(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise ConnectionError("the execution API closed the connection in the middle of an answer")
        return data


class _HttpClient:
    """``http.client`` behind the same interface, for URLs other than ``http://``."""

    def __init__(self, scheme: str, host: str, port: int | None, timeout: float) -> None:
        import http.client

        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        self.conn = cls(host, port, timeout=timeout)

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> tuple[int, str, bytes]:
        try:
            self.conn.request(method, target, body=body, headers=headers)
            resp = self.conn.getresponse()
            return resp.status, resp.reason, resp.read()
        except Exception:
            self.conn.close()
            raise


class ExecutionApi:
    """The execution API of one attempt."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.5) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        #: The URL's path, put before every request's (set with the connection).
        self._prefix = ""
        self._conn: Any = None

    def _connection(self) -> Any:
        # The URL is parsed with the first request: a task that makes none
        # (most no-op and compute tasks with nothing to push) skips it.
        if self._conn is None:
            try:
                url = urllib.parse.urlsplit(self.base_url)
                host, port = url.hostname or "127.0.0.1", url.port
            except ValueError as e:
                raise ValueError(f"the execution API URL {self.base_url!r} is not valid: {e}") from None
            if url.scheme == "http":
                conn: Any = _Http(host, port or 80, self.timeout)
            else:
                conn = _HttpClient(url.scheme, host, port, self.timeout)
            self._prefix, self._conn = url.path, conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, parsed JSON or None) of a 2xx answer; ``ApiError`` otherwise."""
        data = None if body is None else json.dumps(body, allow_nan=False).encode("utf-8")
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                conn = self._connection()
                status, reason, raw = conn.request(method, self._prefix + path, headers, data)
            except (ConnectionError, TimeoutError, OSError) as e:
                self.close()
                if attempt >= self.retries:
                    raise ConnectionError(
                        f"cannot reach the pave execution API at {self.base_url} ({method} {path}): {e}"
                    ) from None
                time.sleep(delay)
                delay *= 2
                continue
            if 200 <= status < 300:
                return status, (json.loads(raw) if raw.strip() else None)
            if status in (502, 503, 504) and attempt < self.retries:
                time.sleep(delay)
                delay *= 2
                continue
            raise ApiError(status, _error_text(raw, reason), method, path)
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
