"""The ``/_sandbox/`` control plane of the Emarsys sandbox (README: "The sandbox's control
endpoints")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from magsync.sandbox.base import Request, Response
from magsync.sandbox.emarsys.auth import RateLimiter, TokenIssuer
from magsync.sandbox.emarsys.data import EmarsysAccount
from magsync.sandbox.emarsys.exports import ExportStore
from magsync.sandbox.emarsys.keyed import GETDATA_MULTI_MODES
from magsync.sandbox.emarsys.types import DeletionEntry

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
            ("POST", r"/_sandbox/contacts/(?P<cid>\d+)/campaign_response", self.response),
            ("GET", r"/_sandbox/deleted", self.deleted),
            ("GET", r"/_sandbox/lists", self.lists),
            ("DELETE", r"/_sandbox/lists/(?P<lid>\d+)", self.delete_list),
            ("DELETE", r"/_sandbox/fields/(?P<fid>\d+)", self.delete_field),
            ("GET", r"/_sandbox/emarsys-switches", self.switches),
            ("POST", r"/_sandbox/emarsys-switches", self.switches),
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
                "responses": len(self.acc.responses), "deleted": len(self.acc.deleted),
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
            gone = [_deletion(d) for d in self.acc.deleted if d.contact_id == cid]
            return Response.json({"message": f"no contact {cid}", "deleted": gone}, 404)
        writes = [{"seq": seq, "fields": f} for seq, f in self.acc.writes_for(cid)]
        edits = [{"at": e.at, "source": e.source, "fields": e.fields, "reported": e.reported}
                 for e in self.acc.edits_for(cid)]
        return Response.json({"id": str(cid), "fields": fields, "writes": writes,
                              "edits": edits})

    def deleted(self, req: Request) -> Response:
        """GET /_sandbox/deleted: every contact contact/delete removed, in order."""
        with self.acc.lock:
            return Response.json([_deletion(d) for d in self.acc.deleted])

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
        cid, body = int(req.params["cid"]), req.json()
        edit = self.acc.ui_edit if req.params["how"] == "ui_edit" else self.acc.ui_import
        try:
            edit(cid, body.get("fields", {}), at=body.get("at"))
        except (KeyError, ValueError) as exc:
            return Response.json({"message": str(exc)}, 400)
        return Response.json({"ok": True})

    def response(self, req: Request) -> Response:
        """POST /_sandbox/contacts/{id}/campaign_response {"source", "at", "in_getchanges"}."""
        body = req.json() if req.body else {}
        try:
            self.acc.campaign_response(int(req.params["cid"]),
                                       str(body.get("source", "unsubscribe")),
                                       at=body.get("at"),
                                       in_getchanges=bool(body.get("in_getchanges", False)))
        except (KeyError, ValueError) as exc:
            return Response.json({"message": str(exc)}, 400)
        return Response.json({"ok": True})

    def delete_list(self, req: Request) -> Response:
        """DELETE /_sandbox/lists/{id}: the list is deleted, as in the Emarsys UI."""
        return _delete(int(req.params["lid"]), self.acc.delete_list, "contact list")

    def delete_field(self, req: Request) -> Response:
        """DELETE /_sandbox/fields/{id}: a custom field is deleted, as in the Emarsys UI."""
        return _delete(int(req.params["fid"]), self.acc.delete_field, "custom field")

    def switches(self, req: Request) -> Response:
        """GET|POST /_sandbox/emarsys-switches {"getdata_multi": "error"|"rows"}."""
        if req.method == "POST":
            mode = req.json().get("getdata_multi", self.acc.getdata_multi)
            if mode not in GETDATA_MULTI_MODES:
                return Response.json({"message": f"getdata_multi is one of "
                                                 f"{list(GETDATA_MULTI_MODES)}"}, 400)
            self.acc.getdata_multi = mode
        return Response.json({"getdata_multi": self.acc.getdata_multi})

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


def _delete(item_id: int, delete: Callable[[int], None], what: str) -> Response:
    try:
        delete(item_id)
    except KeyError:
        return Response.json({"message": f"no {what} {item_id}"}, 404)
    return Response.json({"deleted": item_id})


def _deletion(entry: DeletionEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "id": str(entry.contact_id), "key_id": entry.key_id,
            "key_value": entry.key_value, "fields": entry.fields}


def build_control_routes(sb: Controlled) -> list[tuple[str, str, Handler]]:
    """The Emarsys-specific ``/_sandbox/`` routes, bound to one sandbox."""
    return EmarsysControl(sb).routes()
