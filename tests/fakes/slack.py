"""A local fake of Slack's Web API and incoming webhooks, for the real slack-sdk client.

    async with FakeSlack(tokens={"xoxb-test"}) as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        ...
        assert slack.calls_to("chat.postMessage")[0].body["channel"] == "#ops"

It listens on 127.0.0.1, port 0, and answers like Slack does:

- `auth.test`, `chat.postMessage`, `chat.update` (more with `add_method`): HTTP 200
  with `{"ok": true, ...}` or `{"ok": false, "error": ...}`; a missing or unknown token
  is `not_authed` / `invalid_auth`; channels are looked up by name (`#ops`, `ops`) or
  ID and an unknown one is `channel_not_found`; `ts` values look like Slack's
  (`1717243200.000100`) and increase strictly.
- incoming webhooks on `webhook_url()`: `ok` as text/plain, errors as text with a 4xx.

Every request is recorded as a `Call` (method, parsed body, raw body, arrival time,
headers without the Authorization header), and answers can be scripted for the next
calls: `rate_limit(retry_after=3, calls=2)`, `server_error(500)`, `api_error(
"channel_not_found")`, `delay(5.0)`. Scripts are consumed in order, optionally only by
one method.

Later issues extend it (Socket Mode, interactive endpoints) with `add_method` and
`app.router`, without changing what is here.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

WEBHOOK = "incoming-webhook"
"""The `Call.method` of a request to an incoming webhook."""

DEFAULT_CHANNELS = {"ops": "C0OPS00001", "alerts": "C0ALERTS01", "general": "C0GENERAL1"}

# Incoming webhooks answer errors with these HTTP statuses (and the code as text).
_WEBHOOK_STATUS = {
    "invalid_payload": 400,
    "user_not_found": 400,
    "action_prohibited": 403,
    "invalid_token": 403,
    "no_service": 404,
    "channel_not_found": 404,
    "channel_is_archived": 410,
    "rollup_error": 500,
}


@dataclass(frozen=True)
class Call:
    """One request the fake received."""

    method: str  # "chat.postMessage", or WEBHOOK
    body: dict[str, Any]  # form or JSON, with JSON-encoded form fields (blocks) decoded
    raw_body: str
    time: float  # time.monotonic() on arrival
    headers: dict[str, str]  # without Authorization
    token: str | None  # the bearer token presented, for assertions about auth only


@dataclass
class Script:
    """A scripted answer for the next `calls` requests (to `method`, or to any)."""

    calls: int
    method: str | None = None
    status: int = 200
    error: str | None = None
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class Message:
    """A message the fake holds, as a channel would."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    edits: int = 0


Handler = Callable[["FakeSlack", Call], Awaitable[dict[str, Any]]]


@dataclass
class FakeSlack:
    """The fake server; use as `async with FakeSlack() as slack:`."""

    tokens: set[str] = field(default_factory=lambda: {"xoxb-fake-token"})
    channels: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], Message] = field(default_factory=dict)
    scripts: deque[Script] = field(default_factory=deque)
    methods: dict[str, Handler] = field(default_factory=dict)
    app: web.Application = field(default_factory=web.Application)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _last_ts: int = 0

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> FakeSlack:
        """Listen on 127.0.0.1 on a free port."""
        self.methods.setdefault("auth.test", _auth_test)
        self.methods.setdefault("chat.postMessage", _post_message)
        self.methods.setdefault("chat.update", _update)
        self.app.router.add_post("/api/{method}", self._api)
        self.app.router.add_get("/api/{method}", self._api)
        self.app.router.add_post("/services/{path:.+}", self._webhook)
        self._runner = web.AppRunner(self.app, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def api_url(self) -> str:
        """The Web API base URL to give the client (`base_url=`)."""
        return f"{self.base_url}/api/"

    def webhook_url(self, path: str = "T0FAKE/B0FAKE/fakewebhooksecret") -> str:
        """An incoming-webhook URL served by the fake."""
        return f"{self.base_url}/services/{path}"

    # --- scripting -------------------------------------------------------------------

    def rate_limit(self, retry_after: int, calls: int = 1, method: str | None = None) -> None:
        """Answer the next calls with HTTP 429, `Retry-After: retry_after`."""
        self.scripts.append(
            Script(calls, method, status=429, error="ratelimited", retry_after=retry_after)
        )

    def server_error(self, status: int = 500, calls: int = 1, method: str | None = None) -> None:
        """Answer the next calls with an HTTP 5xx."""
        self.scripts.append(Script(calls, method, status=status, error="internal_error"))

    def api_error(self, error: str, calls: int = 1, method: str | None = None) -> None:
        """Answer the next calls with `{"ok": false, "error": error}` (HTTP 200)."""
        self.scripts.append(Script(calls, method, error=error))

    def delay(self, seconds: float, calls: int = 1, method: str | None = None) -> None:
        """Hold the next calls for `seconds` before answering normally (for timeouts)."""
        self.scripts.append(Script(calls, method, delay=seconds))

    def add_method(self, name: str, handler: Handler) -> None:
        """Serve another Web API method: `handler(fake, call)` returns the JSON answer."""
        self.methods[name] = handler

    # --- queries ---------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls of one method, in arrival order."""
        return [call for call in self.calls if call.method == method]

    def channel_id(self, name_or_id: str) -> str | None:
        """The ID of a channel given as `#name`, `name` or ID; None when unknown."""
        if name_or_id in self.channels.values():
            return name_or_id
        return self.channels.get(name_or_id.removeprefix("#"))

    def next_ts(self) -> str:
        """A message timestamp like Slack's: seconds.microseconds, strictly increasing."""
        micros = max(int(time.time() * 1_000_000), self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # --- handlers --------------------------------------------------------------------

    def _take_script(self, method: str) -> Script | None:
        for script in self.scripts:
            if script.method in (None, method):
                script.calls -= 1
                if script.calls <= 0:
                    self.scripts.remove(script)
                return script
        return None

    async def _record(self, request: web.Request, method: str) -> Call:
        raw = await request.text()
        body: dict[str, Any] = dict(request.query)
        if raw:
            if request.content_type == "application/json":
                body.update(json.loads(raw))
            else:
                for key, value in parse_qsl(raw, keep_blank_values=True):
                    body[key] = _maybe_json(value)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        token = token or body.pop("token", None)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        call = Call(method, body, raw, time.monotonic(), headers, token)
        self.calls.append(call)
        return call

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = await self._record(request, method)
        script = self._take_script(method)
        if script is not None:
            if script.delay:
                await asyncio.sleep(script.delay)
            if script.status == 429:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(script.retry_after or 1)},
                )
            if script.status >= 500:
                return web.Response(status=script.status, text="upstream failure")
            if script.error:
                return web.json_response({"ok": False, "error": script.error})
        if call.token is None:
            return web.json_response({"ok": False, "error": "not_authed"})
        if call.token not in self.tokens:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = self.methods.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return web.json_response(await handler(self, call))

    async def _webhook(self, request: web.Request) -> web.Response:
        call = await self._record(request, WEBHOOK)
        script = self._take_script(WEBHOOK)
        if script is not None:
            if script.delay:
                await asyncio.sleep(script.delay)
            if script.status == 429:
                return web.Response(
                    status=429,
                    text="rate_limited",
                    headers={"Retry-After": str(script.retry_after or 1)},
                )
            if script.status >= 500:
                return web.Response(status=script.status, text="internal_error")
            if script.error:
                status = _WEBHOOK_STATUS.get(script.error, 400)
                return web.Response(status=status, text=script.error)
        if not call.body.get("text") and not call.body.get("blocks"):
            return web.Response(status=400, text="no_text")
        return web.Response(text="ok")


def _maybe_json(value: str) -> Any:
    # slack-sdk form-encodes lists (blocks, attachments) as JSON strings.
    if value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


async def _auth_test(fake: FakeSlack, call: Call) -> dict[str, Any]:
    return {
        "ok": True,
        "url": "https://fake.slack.com/",
        "team": "Fake Team",
        "user": "opsagent",
        "team_id": "T0FAKE",
        "user_id": "U0OPSAGENT",
        "bot_id": "B0OPSAGENT",
    }


async def _post_message(fake: FakeSlack, call: Call) -> dict[str, Any]:
    channel = fake.channel_id(str(call.body.get("channel", "")))
    if channel is None:
        return {"ok": False, "error": "channel_not_found"}
    text, blocks = call.body.get("text"), call.body.get("blocks")
    if not text and not blocks:
        return {"ok": False, "error": "no_text"}
    thread_ts = call.body.get("thread_ts")
    if thread_ts is not None and (channel, thread_ts) not in fake.messages:
        return {"ok": False, "error": "thread_not_found"}
    ts = fake.next_ts()
    fake.messages[(channel, ts)] = Message(channel, ts, text, blocks, thread_ts)
    message: dict[str, Any] = {"type": "message", "user": "U0OPSAGENT", "ts": ts, "text": text}
    if blocks:
        message["blocks"] = blocks
    if thread_ts:
        message["thread_ts"] = thread_ts
    return {"ok": True, "channel": channel, "ts": ts, "message": message}


async def _update(fake: FakeSlack, call: Call) -> dict[str, Any]:
    channel = fake.channel_id(str(call.body.get("channel", "")))
    if channel is None:
        return {"ok": False, "error": "channel_not_found"}
    ts = str(call.body.get("ts", ""))
    message = fake.messages.get((channel, ts))
    if message is None:
        return {"ok": False, "error": "message_not_found"}
    message.text = call.body.get("text", message.text)
    message.blocks = call.body.get("blocks", message.blocks)
    message.edits += 1
    return {"ok": True, "channel": channel, "ts": ts, "text": message.text}
