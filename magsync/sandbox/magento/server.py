"""A Magento 2.4 REST API simulator: customer search/GET/PUT and the Emarsys module's
subscription endpoints, behind honest OAuth 1.0a (or, when enabled, bearer) auth.

Behaviour follows ``API-NOTES.md``: Magento's error format (``message`` with
``%placeholders`` plus ``parameters``), the 2.4.7 input limits (pageSize default 20,
max 300), empty pages past the end, ``is_subscribed`` matched by email across websites,
a PUT's ``addresses`` key replacing the address book, ``?fields=`` partial replies (see
``magento_fields``). Switches (attributes, and
``POST /_sandbox/magento``) turn on bearer tokens, newsletter confirmation, maintenance
mode (503 HTML) and remove the Emarsys module (its routes then 404); the control plane
is documented in README ("The sandbox's control endpoints").
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from magsync.sandbox.base import Handler, Request, Response, SandboxServer
from magsync.sandbox.magento.control import control_routes
from magsync.sandbox.magento.faults import PageFault
from magsync.sandbox.magento.fields import Spec, apply_filter, requested_filter
from magsync.sandbox.magento.oauth1 import OAuth1Verifier, OAuthRefused, parse_authorization
from magsync.sandbox.magento.records import ShopError
from magsync.sandbox.magento.search import CriteriaError, parse_criteria, run_search
from magsync.sandbox.magento.shop import Shop
from magsync.sandbox.magento.shop_gen import generate_shop
from magsync.util import jsoncodec

V1 = r"/rest(?:/(?P<store>[A-Za-z0-9_]+))?/V1"
RESOURCES = (  # (path regex, ACL resource the integration needs)
    (re.compile(V1 + r"/customers/"), "Magento_Customer::customer"),
    (re.compile(V1 + r"/emarsys/"), "Emartech_Emarsys::api_subscriptions"),
)
SWITCHES = ("bearer_enabled", "confirmation_required", "maintenance", "emarsys_module",
            "input_limits")
MAINTENANCE_HTML = (
    b"<!doctype html>\n<html><head><title>Error 503: Service Unavailable</title></head>"
    b"<body><h1>Service Temporarily Unavailable</h1><p>The server is temporarily unable to "
    b"service your request due to maintenance downtime or capacity problems. Please try "
    b"again later.</p></body></html>\n")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def magento_error(message: str, parameters: dict[str, Any] | list[Any] | None = None,
                  status: int = 400) -> Response:
    """A reply in Magento's error format."""
    body: dict[str, Any] = {"message": message}
    if parameters is not None:
        body["parameters"] = parameters
    return Response.json(body, status)


def required_error(name: str) -> Response:
    return magento_error('"%fieldName" is required. Enter and try again.', {"fieldName": name})


class MagentoSandbox(SandboxServer):
    """The Magento simulator; ``shop`` holds its data (generated when not given)."""

    service = "magento"

    def __init__(self, shop: Shop | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 consumer_key: str = "sandbox-ck", consumer_secret: str = "sandbox-cs",
                 access_token: str = "sandbox-access-token",
                 access_token_secret: str = "sandbox-token-secret",
                 bearer_enabled: bool = False, confirmation_required: bool = False,
                 maintenance: bool = False, emarsys_module: bool = True,
                 input_limits: bool = True, log_bodies: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.shop = shop if shop is not None else generate_shop(200, 120, seed=1)
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.access_token, self.access_token_secret = access_token, access_token_secret
        self.bearer_enabled = bearer_enabled
        self.confirmation_required = confirmation_required
        self.maintenance = maintenance
        self.emarsys_module = emarsys_module
        self.input_limits = input_limits
        self.oauth = OAuth1Verifier(consumer_key, consumer_secret, access_token,
                                    access_token_secret, clock=clock)
        self.subscriptions_fault = PageFault()
        super().__init__(host, port, log_bodies=log_bodies)

    # -- wiring --------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", V1 + r"/customers/search", self._search),
            ("GET", V1 + r"/customers/(?P<cid>\d+)", self._get_customer),
            ("PUT", V1 + r"/customers/(?P<cid>\d+)", self._put_customer),
            ("GET", V1 + r"/emarsys/subscriptions", self._get_subscriptions),
            ("POST", V1 + r"/emarsys/subscriptions", self._post_subscriptions),
        ]

    def control_routes(self) -> list[tuple[str, str, Handler]]:
        return control_routes(self)

    def switches(self) -> dict[str, bool]:
        """The current behaviour switches."""
        return {name: bool(getattr(self, name)) for name in SWITCHES}

    def config(self) -> dict[str, Any]:
        """A magsync ``magento:`` config section pointing at this server."""
        return {"base_url": self.url, "store_code": "all", "auth": {
            "method": "oauth1", "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret, "access_token": self.access_token,
            "access_token_secret": self.access_token_secret}}

    def fail_next(self, n: int, status: int = 500) -> None:
        """The next ``n`` requests fail as Magento fails: 503 is the maintenance page,
        other statuses carry Magento's error JSON."""
        failure = self._failure(status)
        self.faults.fail_next(n, status, failure.body, failure.content_type)

    def _failure(self, status: int) -> Response:
        """A failure as Magento answers it: 503 is the maintenance page, others JSON."""
        if status == 503:
            return Response(503, MAINTENANCE_HTML, "text/html; charset=UTF-8")
        return Response(status, json.dumps(self._internal_error()).encode())

    # -- hooks ---------------------------------------------------------------------------
    def before_route(self, req: Request) -> Response | None:
        if self.maintenance:
            return self._failure(503)
        resource = next((r for rx, r in RESOURCES if rx.match(req.path)), None)
        if resource is None or not self._has_route(req.path):
            return None  # unknown routes 404 before any auth, as Magento's router does
        if resource.startswith("Emartech") and not self.emarsys_module:
            return self.not_found(req)
        return self._authenticate(req, resource)

    def server_error(self, req: Request, exc: Exception) -> Response:
        return Response.json(self._internal_error(), 500)

    def _has_route(self, path: str) -> bool:
        return any(pattern.match(path) for _, pattern, _ in self._routes)

    @staticmethod
    def _internal_error() -> dict[str, Any]:
        return {"message": "Internal Error. Details are available in Magento log file. "
                           f"Report ID: webapi-{secrets.token_hex(6)}"}

    def _authenticate(self, req: Request, resource: str) -> Response | None:
        header = req.header("authorization")
        oauth = parse_authorization(header) if header else None
        if oauth is not None:
            host = req.header("host") or f"{self.host}:{self.port}"
            form = []
            if req.header("content-type").startswith("application/x-www-form-urlencoded"):
                form = Request("", "", req.body.decode("utf-8", "replace"), {}, b"").query
            try:
                self.oauth.verify(req.method, f"http://{host}{req.path}", req.query, oauth, form)
            except OAuthRefused as refused:
                return Response.json(refused.body(), refused.status)
            return None
        scheme, _, token = header.partition(" ")
        if self.bearer_enabled and scheme.lower() == "bearer" \
                and secrets.compare_digest(token.strip(), self.access_token):
            return None
        # a bearer token with the switch off leaves the request anonymous: an ACL refusal
        return magento_error("The consumer isn't authorized to access %resources.",
                             {"resources": resource}, 401)

    # -- customers -----------------------------------------------------------------------
    def _search(self, req: Request) -> Response:
        filtered, spec = requested_filter(req.query)
        try:
            criteria = parse_criteria(req.query)
            with self.shop.lock:
                ids, total, size = run_search(
                    self.shop, criteria, default_page_size=20 if self.input_limits else None,
                    max_page_size=300 if self.input_limits else None)
                if filtered:
                    return self._filtered_page(ids, total, criteria.echo(size), spec)
                items = b",".join(self.shop.customer_json(cid) for cid in ids)
        except CriteriaError as err:
            return Response.json(err.body(), 400)
        echo = json.dumps(criteria.echo(size)).encode()
        return Response.raw_json(b'{"items":[' + items + b'],"search_criteria":' + echo
                                 + b',"total_count":' + str(total).encode() + b"}")

    def _filtered_page(self, ids: list[int], total: int, echo: dict[str, Any],
                       spec: Spec | None) -> Response:
        """A search page cut down by ``?fields=`` (the caller holds the shop lock): each
        customer is filtered straight from its stored record, nothing copied first."""
        if spec is None:
            return Response.raw_json(b"[]")  # an invalid filter: Magento's whole answer
        wanted = spec.get("items")
        items: list[dict[str, Any]] = []
        if isinstance(wanted, dict) and "extension_attributes" not in wanted:
            items = [self.shop.customers[cid] for cid in ids]  # the filter only reads them
        elif wanted is not None:
            items = [self.shop.customer_view(cid) for cid in ids]
        page = {"items": items, "search_criteria": echo, "total_count": total}
        return filtered_reply(page, spec)

    def _get_customer(self, req: Request) -> Response:
        cid = int(req.params["cid"])
        with self.shop.lock:
            if cid not in self.shop.customers:
                return self._no_customer(cid)
            return self._customer_reply(req, cid)

    def _customer_reply(self, req: Request, cid: int) -> Response:
        """The customer's JSON (cached), or with ``?fields=`` the filtered customer."""
        filtered, spec = requested_filter(req.query)
        if not filtered:
            return Response.raw_json(self.shop.customer_json(cid))
        return filtered_reply(self.shop.customer_view(cid), spec)

    @staticmethod
    def _no_customer(cid: int) -> Response:
        return magento_error("No such entity with %fieldName = %fieldValue",
                             {"fieldName": "customerId", "fieldValue": cid}, 404)

    def _put_customer(self, req: Request) -> Response:
        cid = int(req.params["cid"])
        try:
            body = req.json()
        except ValueError:
            return magento_error("Decoding error: Syntax error")
        customer = body.get("customer") if isinstance(body, dict) else None
        if not isinstance(customer, dict):
            return required_error("customer")
        problem = self._check_customer_body(customer)
        if problem is not None:
            return problem
        with self.shop.lock:
            if cid not in self.shop.customers:
                return self._no_customer(cid)
            try:
                self.shop.save_customer(cid, customer)
            except ShopError as err:
                return magento_error(str(err))
            subscribed = (customer.get("extension_attributes") or {}).get("is_subscribed")
            if isinstance(subscribed, bool):
                self.shop.set_customer_subscription(
                    cid, subscribed, confirmation_required=self.confirmation_required)
            return self._customer_reply(req, cid)

    @staticmethod
    def _check_customer_body(customer: dict[str, Any]) -> Response | None:
        for name in ("email", "firstname", "lastname"):
            if name in customer and not str(customer[name] or "").strip():
                return required_error(name)
        if "email" in customer and not _EMAIL.match(str(customer["email"])):
            return magento_error('"%fieldName" is not a valid email address.',
                                 {"fieldName": "email"})
        addresses = customer.get("addresses")
        if addresses is not None and (not isinstance(addresses, list) or not all(
                isinstance(a, dict) for a in addresses)):
            return magento_error('The "%value" value\'s type is invalid. The "%type" type '
                                 "was expected. Verify and try again.",
                                 {"value": "addresses", "type": "array"})
        return None

    # -- the Emarsys module ----------------------------------------------------------------
    def _get_subscriptions(self, req: Request) -> Response:
        args = dict(req.query)
        try:
            page = max(1, int(args.get("page") or 1))
            size = max(1, int(args.get("page_size") or 1000))
            website = int(args["website_id"]) if args.get("website_id") else None
        except ValueError:
            return magento_error("Invalid number in page, page_size or website_id")
        failed = self.subscriptions_fault.hit(page)
        if failed is not None:
            return self._failure(failed)
        subscribed = _parse_flag(args.get("subscribed"))
        only_guest = _parse_flag(args.get("only_guest")) is True
        with self.shop.lock:
            rows = [s for s in self.shop.subscribers.values()
                    if (website is None or s.website_id == website)
                    and (subscribed is None or (s.subscriber_status == 1) == subscribed)
                    and (not only_guest or s.customer_id == 0)]
        rows.sort(key=lambda s: s.subscriber_id)
        last_page = max(1, math.ceil(len(rows) / size))
        page = min(page, last_page)  # a Magento collection clamps past-the-end pages
        items = [{"subscriber_id": s.subscriber_id, "customer_id": s.customer_id,
                  "store_id": s.store_id, "website_id": s.website_id,
                  "subscriber_email": s.subscriber_email,
                  "subscriber_status": str(s.subscriber_status)}
                 for s in rows[(page - 1) * size:page * size]]
        return json_reply(req, {"subscriptions": items, "total_count": len(rows),
                                "current_page": page, "last_page": last_page,
                                "page_size": size})

    def _post_subscriptions(self, req: Request) -> Response:
        try:
            body = req.json()
        except ValueError:
            return magento_error("Decoding error: Syntax error")
        items = body.get("subscriptions") if isinstance(body, dict) else None
        if not isinstance(items, list):
            return required_error("subscriptions")
        errors = [e for item in items if (e := self._apply_subscription(item)) is not None]
        if errors:
            return json_reply(req, {"status": "error", "errors": errors})
        return json_reply(req, {"status": "ok"})

    def _apply_subscription(self, item: Any) -> dict[str, Any] | None:
        """Set one existing row's status; None when done or silently skipped."""
        if not isinstance(item, dict):
            return {"email": None, "customer_id": None, "message": "Invalid item"}
        email, status = item.get("subscriber_email"), item.get("subscriber_status")
        error = {"email": email, "customer_id": item.get("customer_id")}
        if not isinstance(email, str) or not _EMAIL.match(email):
            return {**error, "message": "Invalid subscriber_email"}
        if not isinstance(status, bool) and status not in (0, 1):
            return {**error, "message": "Invalid subscriber_status"}
        try:
            website = int(item.get("website_id", ""))
        except (TypeError, ValueError):
            return {**error, "message": "Invalid website_id"}
        with self.shop.lock:
            row = self.shop.find_subscriber(email, website)
            if row is not None:  # a guest without a row is skipped without a word
                self.shop.set_subscriber_status(row.subscriber_id, 1 if status else 3)
        return None


def json_reply(req: Request, data: Any) -> Response:
    """A 200 reply of ``data``, cut down as the request's ``?fields=`` asks."""
    filtered, spec = requested_filter(req.query)
    return filtered_reply(data, spec) if filtered else Response.json(data)


def filtered_reply(data: Any, spec: Spec | None) -> Response:
    """A 200 reply of ``data`` filtered by ``spec``; ``[]`` when the filter was invalid.
    Raises ``FieldsTypeError`` where Magento fails with a 500."""
    body = [] if spec is None else apply_filter(data, spec)
    return Response.raw_json(jsoncodec.dumps(body))


def _parse_flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.strip().lower() in ("1", "true", "yes")


def serve(shop: Shop | None = None, **kwargs: Any) -> MagentoSandbox:
    """Start a MagentoSandbox in a background thread (a convenience for demos)."""
    server = MagentoSandbox(shop, **kwargs)
    server.start()
    return server


__all__ = ["MagentoSandbox", "ShopError", "magento_error", "serve"]
