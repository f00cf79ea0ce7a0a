"""The ``/_sandbox/`` control plane of the Emarsys sandbox (see ``emarsys.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from magsync.sandbox.base import Request, Response
from magsync.sandbox.emarsys.auth import RateLimiter, TokenIssuer
from magsync.sandbox.emarsys.data import EmarsysAccount
from magsync.sandbox.emarsys.exports import ExportStore

Handler = Callable[[Request], Response]
DEFAULT_CONTACT_LIMIT = 1000


class Controlled(Protocol):
    """What the control plane needs of the Emarsys sandbox."""

    account: EmarsysAccount
    exports: ExportStore
    rate: RateLimiter
    tokens: TokenIssuer

    def fail_next_429(self, n: int, reset_in: float = ...) -> None: ...

    def fail_next_error(self, n: int, status: int = ..., code: int = ...,
                        text: str = ...) -> None: ...

    def expire_tokens(self) -> None: ...


class EmarsysControl:
    """The Emarsys-specific ``/_sandbox/`` handlers, bound to one sandbox."""

    def __init__(self, sb: Controlled) -> None:
        self.sb = sb
        self.acc = sb.account

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path regex, handler) of every control route."""
        return [
            ("GET", r"/_sandbox/state", self.state),
            ("GET", r"/_sandbox/contacts", self.contacts),
            ("POST", r"/_sandbox/contacts", self.seed),
            ("GET", r"/_sandbox/contacts/(?P<cid>\d+)", self.one_contact),
            ("POST", r"/_sandbox/contacts/(?P<cid>\d+)/(?P<how>ui_edit|ui_import)", self.edit),
            ("GET", r"/_sandbox/lists", self.lists),
            ("POST", r"/_sandbox/emarsys-faults", self.faults),
            ("POST", r"/_sandbox/exports/(?P<eid>\d+)/expire", self.expire_export),
            ("POST", r"/_sandbox/indexed", self.indexed),
        ]

    def state(self, req: Request) -> Response:
        """GET /_sandbox/state: counts and rate-limit statistics."""
        with self.acc.lock:
            return Response.json({
                "contacts": len(self.acc.contacts), "fields": len(self.acc.fields),
                "lists": len(self.acc.lists), "changes": len(self.acc.changes),
                "exports": len(self.sb.exports.exports),
                "early_requests": self.sb.rate.early_requests,
                "rate_limited": self.sb.rate.rejected, "tokens_issued": self.sb.tokens.issued})

    def contacts(self, req: Request) -> Response:
        """GET /_sandbox/contacts[?field=F&value=V&limit=N]: contacts with their fields."""
        query = dict(req.query)
        if "field" in query:
            ids = self.acc.find_contacts(int(query["field"]), query.get("value", ""))
        else:
            with self.acc.lock:
                ids = sorted(self.acc.contacts)
        limit = int(query.get("limit") or DEFAULT_CONTACT_LIMIT)
        return Response.json([{"id": str(cid), **self.acc.contact(cid)} for cid in ids[:limit]])

    def one_contact(self, req: Request) -> Response:
        """GET /_sandbox/contacts/{id}: one contact and its write log."""
        cid = int(req.params["cid"])
        try:
            fields = self.acc.contact(cid)
        except KeyError:
            return Response.json({"message": f"no contact {cid}"}, 404)
        writes = [{"seq": seq, "fields": f} for seq, f in self.acc.writes_for(cid)]
        return Response.json({"id": str(cid), "fields": fields, "writes": writes})

    def lists(self, req: Request) -> Response:
        """GET /_sandbox/lists: every contact list with its members."""
        with self.acc.lock:
            return Response.json([{"id": lst.id, "name": lst.name,
                                   "members": sorted(lst.members)}
                                  for lst in self.acc.lists.values()])

    def seed(self, req: Request) -> Response:
        """POST /_sandbox/contacts {"contacts": [...]}: seed pre-existing contacts."""
        body = req.json()
        ids = [self.acc.seed_contact(c) for c in body.get("contacts", [])]
        return Response.json({"ids": ids})

    def edit(self, req: Request) -> Response:
        """POST /_sandbox/contacts/{id}/ui_edit|ui_import {"fields": {...}, "at": T}."""
        cid, fields = int(req.params["cid"]), req.json().get("fields", {})
        try:
            if req.params["how"] == "ui_edit":
                self.acc.ui_edit(cid, fields, at=req.json().get("at"))
            else:
                self.acc.ui_import(cid, fields)
        except (KeyError, ValueError) as exc:
            return Response.json({"message": str(exc)}, 400)
        return Response.json({"ok": True})

    def faults(self, req: Request) -> Response:
        """POST /_sandbox/emarsys-faults: Emarsys-specific faults (see emarsys.py)."""
        spec: dict[str, Any] = req.json()
        if spec.get("rate_limit_next"):
            self.sb.fail_next_429(int(spec["rate_limit_next"]), float(spec.get("reset_in", 1)))
        if spec.get("error_next"):
            self.sb.fail_next_error(int(spec["error_next"]), int(spec.get("status", 500)),
                               int(spec.get("code", 10001)), str(spec.get("text", "Error")))
        if spec.get("contact_error"):
            ce = spec["contact_error"]
            self.acc.inject_contact_error(ce["key_id"], ce["key_value"], int(ce["code"]),
                                     str(ce.get("text", "Injected error")))
        if spec.get("clear_contact_errors"):
            self.acc.clear_contact_errors()
        if spec.get("expire_tokens"):
            self.sb.expire_tokens()
        if spec.get("reset_rate"):
            self.sb.rate.reset()
        return Response.json({"ok": True})

    def expire_export(self, req: Request) -> Response:
        """POST /_sandbox/exports/{id}/expire: the export answers 410 from now on."""
        self.sb.exports.expire(int(req.params["eid"]))
        return Response.json({"ok": True})

    def indexed(self, req: Request) -> Response:
        """POST /_sandbox/indexed {"field": F, "indexed": bool}: (un)index a key field."""
        body = req.json()
        self.acc.set_indexed(body["field"], bool(body.get("indexed", True)))
        return Response.json({"ok": True})


def build_control_routes(sb: Controlled) -> list[tuple[str, str, Handler]]:
    """The Emarsys-specific ``/_sandbox/`` routes, bound to one sandbox."""
    return EmarsysControl(sb).routes()
