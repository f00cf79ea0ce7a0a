"""The ``/_sandbox/`` control plane of the Emarsys sandbox (see ``emarsys.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magsync.sandbox.base import Request, Response

if TYPE_CHECKING:
    from magsync.sandbox.emarsys import EmarsysSandbox

Handler = Callable[[Request], Response]
DEFAULT_CONTACT_LIMIT = 1000


def build_control_routes(sb: EmarsysSandbox) -> list[tuple[str, str, Handler]]:
    """The Emarsys-specific ``/_sandbox/`` routes, bound to one sandbox."""
    acc = sb.account

    def state(req: Request) -> Response:
        with acc.lock:
            return Response.json({
                "contacts": len(acc.contacts), "fields": len(acc.fields),
                "lists": len(acc.lists), "changes": len(acc.changes),
                "exports": len(sb.exports.exports), "early_requests": sb.rate.early_requests,
                "rate_limited": sb.rate.rejected, "tokens_issued": sb.tokens.issued})

    def contacts(req: Request) -> Response:
        query = dict(req.query)
        if "field" in query:
            ids = acc.find_contacts(int(query["field"]), query.get("value", ""))
        else:
            with acc.lock:
                ids = sorted(acc.contacts)
        limit = int(query.get("limit") or DEFAULT_CONTACT_LIMIT)
        return Response.json([{"id": str(cid), **acc.contact(cid)} for cid in ids[:limit]])

    def one_contact(req: Request) -> Response:
        cid = int(req.params["cid"])
        try:
            fields = acc.contact(cid)
        except KeyError:
            return Response.json({"message": f"no contact {cid}"}, 404)
        writes = [{"seq": seq, "fields": f} for seq, f in acc.writes_for(cid)]
        return Response.json({"id": str(cid), "fields": fields, "writes": writes})

    def lists(req: Request) -> Response:
        with acc.lock:
            return Response.json([{"id": lst.id, "name": lst.name,
                                   "members": sorted(lst.members)}
                                  for lst in acc.lists.values()])

    def seed(req: Request) -> Response:
        body = req.json()
        ids = [acc.seed_contact(c) for c in body.get("contacts", [])]
        return Response.json({"ids": ids})

    def edit(req: Request) -> Response:
        cid, fields = int(req.params["cid"]), req.json().get("fields", {})
        try:
            if req.params["how"] == "ui_edit":
                acc.ui_edit(cid, fields, at=req.json().get("at"))
            else:
                acc.ui_import(cid, fields)
        except (KeyError, ValueError) as exc:
            return Response.json({"message": str(exc)}, 400)
        return Response.json({"ok": True})

    def faults(req: Request) -> Response:
        spec: dict[str, Any] = req.json()
        if spec.get("rate_limit_next"):
            sb.fail_next_429(int(spec["rate_limit_next"]), float(spec.get("reset_in", 1)))
        if spec.get("error_next"):
            sb.fail_next_error(int(spec["error_next"]), int(spec.get("status", 500)),
                               int(spec.get("code", 10001)), str(spec.get("text", "Error")))
        if spec.get("contact_error"):
            ce = spec["contact_error"]
            acc.inject_contact_error(ce["key_id"], ce["key_value"], int(ce["code"]),
                                     str(ce.get("text", "Injected error")))
        if spec.get("clear_contact_errors"):
            acc.clear_contact_errors()
        if spec.get("expire_tokens"):
            sb.expire_tokens()
        if spec.get("reset_rate"):
            sb.rate.reset()
        return Response.json({"ok": True})

    def expire_export(req: Request) -> Response:
        sb.exports.expire(int(req.params["eid"]))
        return Response.json({"ok": True})

    def indexed(req: Request) -> Response:
        body = req.json()
        acc.set_indexed(body["field"], bool(body.get("indexed", True)))
        return Response.json({"ok": True})

    return [
        ("GET", r"/_sandbox/state", state),
        ("GET", r"/_sandbox/contacts", contacts),
        ("POST", r"/_sandbox/contacts", seed),
        ("GET", r"/_sandbox/contacts/(?P<cid>\d+)", one_contact),
        ("POST", r"/_sandbox/contacts/(?P<cid>\d+)/(?P<how>ui_edit|ui_import)", edit),
        ("GET", r"/_sandbox/lists", lists),
        ("POST", r"/_sandbox/emarsys-faults", faults),
        ("POST", r"/_sandbox/exports/(?P<eid>\d+)/expire", expire_export),
        ("POST", r"/_sandbox/indexed", indexed),
    ]
