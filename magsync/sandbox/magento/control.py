"""The Magento sandbox's control plane: ``/_sandbox/magento`` (switches),
``/_sandbox/magento-faults`` (the subscriber list failing mid-read), ``/_sandbox/shop/...``
(shop mutations) and ``/_sandbox/shop/clock``; documented in ``CONTROL.md``.

A test or demo in another process changes the shop over HTTP exactly as the Python API
(``server.shop``) does; every route answers JSON, ``400 {"message"}`` on a bad request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from magsync.sandbox.base import Handler, Request, Response
from magsync.sandbox.magento.faults import PageFault
from magsync.sandbox.magento.records import TIME_FORMAT, ShopError, utc_now
from magsync.sandbox.magento.shop import Shop

SHOP = r"/_sandbox/shop"


class Controlled(Protocol):
    """What the control plane needs of the Magento sandbox."""

    shop: Shop
    subscriptions_fault: PageFault

    def switches(self) -> dict[str, bool]: ...


def control_routes(server: Controlled) -> list[tuple[str, str, Handler]]:
    """The routes, bound to one server."""
    shop = server.shop

    def switches(req: Request) -> Response:
        if req.method == "POST":
            for name, value in _body(req).items():
                if name not in server.switches():
                    raise ShopError(f"unknown switch {name!r}")
                setattr(server, name, bool(value))
        return Response.json(server.switches())

    def customer(req: Request) -> Response:
        cid = int(req.params["cid"])
        if req.method == "DELETE":
            shop.delete_customer(cid)
            return Response.json({"deleted": cid})
        if req.method == "POST":
            shop.edit_customer(cid, **_body(req))
        with shop.lock:
            if cid not in shop.customers:
                return Response.json({"message": f"no customer {cid}"}, 404)
            return Response.json(shop.customer_dict(cid))

    def subscriber(req: Request) -> Response:
        sid = int(req.params["sid"])
        if req.method == "DELETE":  # the admin newsletter grid's delete: no trace left
            shop.delete_subscriber(sid)
            return Response.json({"deleted": sid})
        shop.set_subscriber_status(sid, int(_body(req)["status"]))
        return Response.json(shop.subscribers[sid].as_dict())


    def subscribers(req: Request) -> Response:
        if req.method == "POST":
            spec = _body(req)
            sid = shop.add_subscriber(spec["email"], website_id=int(spec.get("website_id", 1)),
                                      status=int(spec.get("status", 1)),
                                      customer_id=int(spec.get("customer_id", 0)))
            return Response.json(shop.subscribers[sid].as_dict())
        email = dict(req.query).get("email", "")
        rows = shop.subscribers_of(email) if email else list(shop.subscribers.values())
        return Response.json([s.as_dict() for s in rows])

    def change_email(req: Request) -> Response:
        shop.change_email(int(req.params["cid"]), _body(req)["email"])
        return Response.json({"ok": True})

    table: list[tuple[str, str, Callable[[Request], Response]]] = [
        ("GET", r"/_sandbox/magento", switches),
        ("POST", r"/_sandbox/magento", switches),
        ("GET", r"/_sandbox/magento-faults", lambda req: page_fault(server, req)),
        ("POST", r"/_sandbox/magento-faults", lambda req: page_fault(server, req)),
        ("GET", SHOP, lambda req: Response.json(shop.stats())),
        ("POST", SHOP + r"/customers", lambda req: Response.json(
            {"id": shop.create_customer(**_body(req))})),
        ("GET", SHOP + r"/customers/(?P<cid>\d+)", customer),
        ("POST", SHOP + r"/customers/(?P<cid>\d+)", customer),
        ("DELETE", SHOP + r"/customers/(?P<cid>\d+)", customer),
        ("POST", SHOP + r"/customers/(?P<cid>\d+)/email", change_email),
        ("POST", SHOP + r"/guests", lambda req: Response.json(
            {"id": shop.register_guest(**_body(req))})),
        ("GET", SHOP + r"/subscribers", subscribers),
        ("POST", SHOP + r"/subscribers", subscribers),
        ("POST", SHOP + r"/subscribers/(?P<sid>\d+)", subscriber),
        ("DELETE", SHOP + r"/subscribers/(?P<sid>\d+)", subscriber),
        ("POST", SHOP + r"/clock", lambda req: set_clock(server, _body(req))),
    ]
    return [(m, p, _guarded(h)) for m, p, h in table]


def page_fault(server: Controlled, req: Request) -> Response:
    """``{"subscriptions_fail_from_page": N, "status": 500, "times": null}`` arms the
    subscriber-list fault, ``{"clear": true}`` disarms it; GET shows it."""
    if req.method == "POST":
        spec = _body(req)
        page = None if spec.get("clear") else spec.get("subscriptions_fail_from_page")
        times = spec.get("times")
        server.subscriptions_fault.set(None if page is None else int(page),
                                       int(spec.get("status", 500)),
                                       None if times is None else int(times))
    return Response.json(server.subscriptions_fault.as_json())


def set_clock(server: Controlled, spec: dict[str, Any]) -> Response:
    """``{"now": "YYYY-MM-DD HH:MM:SS"}`` freezes the shop clock (UTC),
    ``{"offset_seconds": N}`` runs it N seconds off real time, ``{"real": true}`` resets."""
    clock: Callable[[], datetime]
    if spec.get("now"):
        frozen = datetime.strptime(spec["now"], TIME_FORMAT).replace(tzinfo=timezone.utc)
        clock = lambda: frozen  # noqa: E731
    elif "offset_seconds" in spec:
        offset = timedelta(seconds=float(spec["offset_seconds"]))
        clock = lambda: utc_now() + offset  # noqa: E731
    else:
        clock = utc_now
    server.shop.now = clock
    return Response.json({"now": server.shop.timestamp()})


def _body(req: Request) -> dict[str, Any]:
    data = req.json() if req.body else {}
    if not isinstance(data, dict):
        raise ShopError("expected a JSON object")
    return data


def _guarded(handler: Callable[[Request], Response]) -> Handler:
    """Bad input answers 400 with a message instead of a 500."""
    def run(req: Request) -> Response:
        try:
            return handler(req)
        except (ShopError, KeyError, TypeError, ValueError) as err:
            return Response.json({"message": str(err)}, 400)
    return run
