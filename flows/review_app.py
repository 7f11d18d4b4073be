"""The review page of `libra review`: a small Starlette app over tasks/annotation/review.py.

Safety, because the texts shown are attacker-written (responses) and the page can write labels:
- It binds 127.0.0.1 unless told otherwise. On a loopback bind every request must name a loopback
  Host (a DNS-rebinding page on another site cannot reach it). On any other bind every request needs
  the session token: `?token=` once (it then lives in an HttpOnly, SameSite=Strict cookie), the
  cookie, or the `X-Libra-Token` header.
- Writes are JSON POSTs that must carry the token in the `X-Libra-Token` header, on every bind: a
  cookie alone (which a cross-site form would send) is not enough.
- Every text reaches the page as JSON and is set with `textContent`; the HTML template is rendered by
  Jinja2 with autoescaping; the Content-Security-Policy allows scripts from this origin's files only,
  so even an injected `<script>` or `onerror=` would not run.
"""

from __future__ import annotations

import ipaddress
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from libra.tasks.annotation.review import (
    ReviewError,
    ReviewFilter,
    ReviewSession,
    check_annotator,
    filter_options,
    needs_label,
    progress,
    review_item,
    review_items,
)
from libra.warehouse import Warehouse, WarehouseError

TOKEN_HEADER = "x-libra-token"
TOKEN_COOKIE = "libra_review_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
STATIC = {"review.js": "text/javascript", "review.css": "text/css"}


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:8765' -> '::1'."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


@dataclass(frozen=True)
class ReviewSettings:
    warehouse: str
    annotator: str
    per_item: int = 1
    scope: str = "hard"
    token: str = ""
    require_token: bool = False  # True on any bind but loopback
    where: str | None = None  # the operator's predicate over v_dataset (checked by check_where)


def _web_text(name: str) -> str:
    return resources.files("libra.flows").joinpath("review_web", name).read_text(encoding="utf-8")


class GuardMiddleware:
    """Host check (loopback binds), the token (non-loopback binds; every POST) and security headers."""

    def __init__(self, app: ASGIApp, settings: ReviewSettings):
        self.app = app
        self.settings = settings

    def _token_ok(self, candidate: str | None) -> bool:
        return bool(candidate) and secrets.compare_digest(candidate.encode(), self.settings.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if (not refusal and self.settings.require_token and request.method == "GET"
                        and self._token_ok(request.query_params.get("token"))):
                    cookie = f"{TOKEN_COOKIE}={self.settings.token}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, request: Request) -> Response | None:
        if request.url.path == "/health":
            return None
        if not self.settings.require_token and not is_loopback(_host_name(request.headers.get("host", ""))):
            return PlainTextResponse("this page answers on 127.0.0.1 / localhost only", status_code=400)
        header = request.headers.get(TOKEN_HEADER)
        if request.method == "POST":
            if not self._token_ok(header):
                return PlainTextResponse("a write needs the page's token in the X-Libra-Token header", 403)
            if not request.headers.get("content-type", "").startswith("application/json"):
                return PlainTextResponse("a write is a JSON POST", 415)
            return None
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("method not allowed", 405)
        if self.settings.require_token and not any(
                self._token_ok(t) for t in (header, request.query_params.get("token"), request.cookies.get(TOKEN_COOKIE))):
            return PlainTextResponse("this page needs its token: open the URL `libra review` printed", 403)
        return None


def create_app(settings: ReviewSettings) -> Starlette:
    wh = Warehouse(settings.warehouse, create=False)
    session = ReviewSession(wh)
    templates = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = templates.from_string(_web_text("review.html"))

    def annotator_of(request: Request, body: dict[str, Any] | None = None) -> str:
        name = (body or {}).get("annotator") or request.query_params.get("annotator") or settings.annotator
        return check_annotator(name)

    def bad(e: Exception) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=400 if isinstance(e, ReviewError) else 503)

    async def index(request: Request) -> Response:
        try:
            annotator = annotator_of(request)
        except ReviewError as e:
            return PlainTextResponse(str(e), 400)
        html = page.render(token=settings.token, annotator=annotator, per_item=settings.per_item,
                           scope=settings.scope, warehouse=str(wh.path.name))
        return HTMLResponse(html)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", 404)
        return Response(_web_text(name), media_type=STATIC[name])

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    def _items_payload(filt: ReviewFilter, annotator: str, with_options: bool) -> dict[str, Any]:
        items = review_items(wh, filt, annotator, settings.where)
        items = items.with_columns(needs_label(items, settings.per_item))
        payload = {"items": items.to_dicts(), "progress": progress(items, settings.per_item), "annotator": annotator}
        if with_options:  # the filters' values: once per page load, not after every label
            payload["options"] = filter_options(wh)
        return payload

    async def items(request: Request) -> Response:
        try:
            filt = ReviewFilter.from_params(dict(request.query_params), settings.scope)
            payload = await run_in_threadpool(_items_payload, filt, annotator_of(request),
                                              request.query_params.get("options") == "1")
        except (ReviewError, WarehouseError) as e:
            return bad(e)
        return JSONResponse(payload)

    async def item(request: Request) -> Response:
        try:
            found = await run_in_threadpool(review_item, wh, request.path_params["id"], annotator_of(request),
                                            settings.per_item)
        except (ReviewError, WarehouseError) as e:
            return bad(e)
        return JSONResponse(found)

    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ReviewError("the body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ReviewError("expected a JSON object with a string `id`")
        return body

    async def label(request: Request) -> Response:
        try:
            body = await _body(request)
            seconds = body.get("seconds")
            if seconds is not None and not isinstance(seconds, int | float):
                raise ReviewError("`seconds` must be a number")
            note = body.get("note")
            if note is not None and not isinstance(note, str):
                raise ReviewError("`note` must be text")
            stored = await run_in_threadpool(session.save_label, body["id"], str(body.get("label") or ""),
                                             annotator_of(request, body), note, seconds)
        except (ReviewError, WarehouseError) as e:
            return bad(e)
        return JSONResponse({"id": body["id"], "label": stored})

    async def undo(request: Request) -> Response:
        try:
            body = await _body(request)
            who = annotator_of(request, body)
            removed = await run_in_threadpool(session.undo, body["id"], who)
            now = await run_in_threadpool(session.label_now, body["id"], who)
        except (ReviewError, WarehouseError) as e:
            return bad(e)
        return JSONResponse({"id": body["id"], "removed": removed, "label_now": now})

    @asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            await run_in_threadpool(session.close)

    app = Starlette(routes=[
        Route("/", index), Route("/health", health), Route("/static/{name}", static),
        Route("/api/items", items), Route("/api/item/{id}", item),
        Route("/api/label", label, methods=["POST"]), Route("/api/undo", undo, methods=["POST"]),
    ], lifespan=lifespan)
    app.add_middleware(GuardMiddleware, settings=settings)
    return app
