"""A fake task execution API (docs/execution-api.md) on http.server, in a thread."""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeExecutionApi:
    """Serves one attempt's context; records pushed XComs and rendered templates.

    ``xcoms`` maps (task_id, key) to a value, or (task_id, key, map_index) for
    one instance of a mapped task (then a pull without map_index gets the list).
    ``render`` renders ``{{ name }}`` from ``template_vars`` (a tiny stand-in for Jinja).
    """

    TOKEN = "test-token"

    def __init__(self, context: dict[str, Any], xcoms: dict[tuple, Any] | None = None,
                 template_vars: dict[str, Any] | None = None, xcom_max_bytes: int = 64 * 1024) -> None:
        base = {
            "dag_id": "d", "run_id": "manual__2025-01-01T00:00:00+00:00", "task_id": "t",
            "map_index": -1, "try_number": 1, "logical_date": "2025-01-01T00:00:00Z",
            "data_interval_start": "2025-01-01T00:00:00Z", "data_interval_end": "2025-01-01T00:00:00Z",
            "ds": "2025-01-01", "ds_nodash": "20250101", "ts": "2025-01-01T00:00:00+00:00",
            "run_after": "2025-01-01T00:00:00Z", "params": {}, "conf": {}, "mapped_args": {},
        }
        base.update(context)
        self.context = base
        self.xcoms: dict[tuple, Any] = dict(xcoms or {})
        self.pushed: dict[str, Any] = {}
        self.rendered: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.template_vars = {"ds": base["ds"], "run_id": base["run_id"], **(template_vars or {})}
        self.xcom_max_bytes = xcom_max_bytes
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/execution/v1"

    def __enter__(self) -> "FakeExecutionApi":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _get_xcom(self, task_id: str, key: str, map_index: int | None) -> tuple[bool, Any]:
        if map_index is not None:
            for k in ((task_id, key, map_index),) + (((task_id, key),) if map_index == -1 else ()):
                if k in self.xcoms:
                    return True, self.xcoms[k]
            return False, None
        if (task_id, key) in self.xcoms:
            return True, self.xcoms[(task_id, key)]
        mapped = sorted((k[2], v) for k, v in self.xcoms.items() if len(k) == 3 and k[:2] == (task_id, key))
        if mapped:
            return True, [v for _, v in mapped]
        return False, None

    def _render(self, template: str) -> tuple[int, dict[str, Any]]:
        def sub(m: re.Match) -> str:
            expr = m.group(1).strip()
            value: Any = {"params": self.context["params"], **self.template_vars}
            for part in expr.split("."):
                if not isinstance(value, dict) or part not in value:
                    raise KeyError(expr)
                value = value[part]
            return str(value)

        try:
            rendered = re.sub(r"\{\{(.*?)\}\}", sub, template)
        except KeyError as e:
            return 422, {"error": f"undefined variable {e.args[0]!r} in template"}
        self.rendered.append(template)
        return 200, {"rendered": rendered}

    def _handler(self) -> type:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                api.requests.append((method, self.path))
                if self.headers.get("Authorization") != f"Bearer {api.TOKEN}":
                    return self._send(401, {"error": "missing or bad token"})
                path = url.path.removeprefix("/execution/v1")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                query = dict(urllib.parse.parse_qsl(url.query))
                if method == "GET" and path == "/ti/context":
                    return self._send(200, api.context)
                if method == "POST" and path == "/render":
                    return self._send(*api._render(body["template"]))
                if path.startswith("/xcom/"):
                    name = urllib.parse.unquote(path[len("/xcom/"):])
                    if method == "GET":
                        idx = query.get("map_index")
                        found, value = api._get_xcom(name, query.get("key", "return_value"),
                                                     int(idx) if idx is not None else None)
                        return self._send(200, {"value": value}) if found else self._send(404, {"error": "no such XCom"})
                    if method == "PUT":
                        if len(json.dumps(body["value"], separators=(",", ":"))) > api.xcom_max_bytes:
                            return self._send(413, {"error": f"XCom `{name}` is larger than the XCom cap; put the data in object storage and pass its URI"})
                        api.pushed[name] = body["value"]
                        return self._send(204)
                return self._send(404, {"error": "no endpoint"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_PUT(self) -> None:
                self._route("PUT")

            def do_POST(self) -> None:
                self._route("POST")

        return Handler
