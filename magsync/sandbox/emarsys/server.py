"""The sandbox Emarsys Core API: an HTTP face on ``EmarsysAccount``.

Routes are served under ``/api/v2`` (WSSE) and ``/api/v3`` (OAuth 2.0 bearer), token
endpoint at ``/oauth2/token``. Every reply uses Emarsys's envelope and carries the
rate-limit headers. The ``/_sandbox/`` control plane (never authenticated, faulted or
rate limited) is in ``control.py`` and documented in ``../CONTROL.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from magsync.sandbox.base import LoggedRequest, Request, Response, SandboxServer
from magsync.sandbox.emarsys.auth import RateLimiter, TokenIssuer, WsseChecker
from magsync.sandbox.emarsys.control import build_control_routes
from magsync.sandbox.emarsys.data import EmarsysAccount, RequestFailed, WriteEntry
from magsync.sandbox.emarsys.exports import ExportStore
from magsync.sandbox.emarsys.types import DeletionEntry

MAX_CONTACTS = 1000
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_GETDATA_KEYS = 1000
API = r"/api/v[23]"

Handler = Callable[[Request], Response]


def reply(data: Any = None, *, status: int = 200, code: int = 0, text: str = "OK",
          headers: dict[str, str] | None = None) -> Response:
    """An Emarsys envelope ``{"replyCode", "replyText", "data"}``."""
    body = {"replyCode": code, "replyText": text, "data": "" if data is None else data}
    return Response.json(body, status, headers)


class EmarsysSandbox(SandboxServer):
    """A stateful Emarsys API on loopback; ``account`` holds the data, ``exports`` the jobs."""

    service = "emarsys"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, username: str = "sandbox",
                 secret: str = "sandbox-secret", client_id: str = "sandbox-client",
                 client_secret: str = "sandbox-client-secret", token_lifetime: float = 3600,
                 rate_limit: int = 1000, rate_window: float = 60.0, key_fields: bool = True,
                 indexed_fields: Iterable[int | str] | None = None, log_bodies: bool = True,
                 clock: Callable[[], float] = time.time, export_polls: int = 2) -> None:
        self.username, self.secret = username, secret
        self.client_id, self.client_secret = client_id, client_secret
        self.clock = clock
        self.account = EmarsysAccount(key_fields=key_fields, indexed_fields=indexed_fields,
                                      clock=clock)
        self.exports = ExportStore(polls_until_ready=export_polls)
        self.wsse = WsseChecker(username, secret, clock)
        self.tokens = TokenIssuer(client_id, client_secret, token_lifetime, clock)
        self.rate = RateLimiter(rate_limit, rate_window, clock)
        self._pending_headers: dict[int, dict[str, str]] = {}
        # what a request wrote or deleted, stamped with its log seq once it is logged
        self._pending_writes: dict[int, list[WriteEntry] | list[DeletionEntry]] = {}
        super().__init__(host, port, log_bodies=log_bodies)

    # -- addresses -------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """Base URL of the WSSE API (``.../api/v2``)."""
        return f"{self.url}/api/v2"

    @property
    def api_url_v3(self) -> str:
        """Base URL of the OAuth 2.0 API (``.../api/v3``)."""
        return f"{self.url}/api/v3"

    @property
    def token_url(self) -> str:
        """The OAuth 2.0 token endpoint."""
        return f"{self.url}/oauth2/token"

    # -- Python API for tests and the demo -------------------------------------------
    @property
    def early_requests(self) -> int:
        """Requests that arrived before a reset time announced with a 429."""
        return self.rate.early_requests

    def fail_next_429(self, n: int, reset_in: float = 1.0) -> None:
        """Answer the next ``n`` API requests 429/7003, announcing a reset ``reset_in`` s ahead."""
        self.rate.force_429(n, reset_in)

    def fail_next_error(self, n: int, status: int = 500, code: int = 10001,
                        text: str = "Internal error") -> None:
        """Answer the next ``n`` requests with HTTP ``status`` in an Emarsys envelope (e.g. 423)."""
        body = json.dumps({"replyCode": code, "replyText": text, "data": ""}).encode()
        self.faults.fail_next(n, status, body)

    def inject_contact_error(self, key_id: Any, key_value: Any, code: int, text: str) -> None:
        """Upserts of this key fail with per-contact ``code`` until cleared."""
        self.account.inject_contact_error(key_id, key_value, code, text)

    def writes_for(self, contact_id: int) -> list[tuple[int, dict[str, Any]]]:
        """(request seq as in the request log, {field: value}) per upsert that wrote it."""
        return self.account.writes_for(contact_id)

    def seed_contact(self, fields: dict[Any, Any]) -> int:
        """A pre-existing contact (no change event); returns its internal id."""
        return self.account.seed_contact(fields)

    def find_contacts(self, field_id: int, value: Any) -> list[int]:
        """Internal ids of contacts whose field holds ``value``."""
        return self.account.find_contacts(field_id, value)

    def ui_edit(self, contact_id: int, fields: dict[Any, Any], *, at: float | None = None
                ) -> None:
        """A change made in the Emarsys UI or a form (getchanges reports it)."""
        self.account.ui_edit(contact_id, fields, at=at)

    def ui_import(self, contact_id: int, fields: dict[Any, Any]) -> None:
        """A change made by a UI data import (getchanges does not report it)."""
        self.account.ui_import(contact_id, fields)

    def expire_tokens(self) -> None:
        """Every OAuth 2.0 token issued so far stops working."""
        self.tokens.expire_all()

    # -- hooks -----------------------------------------------------------------------
    def before_route(self, req: Request) -> Response | None:
        if not req.path.startswith("/api/"):
            return None
        if req.path.startswith("/api/v2/"):
            problem = self.wsse.check(req.header("X-WSSE"))
        elif req.path.startswith("/api/v3/"):
            problem = self.tokens.check_bearer(req.header("Authorization"))
        else:
            return None
        if problem is not None:
            return reply(status=401, code=1, text=f"Unauthorized: {problem}")
        decision = self.rate.hit()
        self._pending_headers[id(req)] = decision.headers
        if not decision.allowed:
            return reply(status=429, code=7003, text="Too many requests",
                         headers=decision.headers)
        return None

    def after_route(self, req: Request, resp: Response) -> None:
        headers = self._pending_headers.pop(id(req), None) or self.rate.peek()
        for name, value in headers.items():
            resp.headers.setdefault(name, value)

    def not_found(self, req: Request) -> Response:
        return reply(status=404, code=1, text=f"Unknown endpoint: {req.method} {req.path}")

    def server_error(self, req: Request, exc: Exception) -> Response:
        return reply(status=500, code=10001, text=f"Internal error: {exc}")

    def _record(self, req: Request, status: int) -> None:
        # The base log assigns the seq; stamp it on the writes this request made.
        with self._log_lock:
            self._seq += 1
            seq = self._seq
            self._log.append(LoggedRequest(
                seq, time.time(), req.method, req.path, req.query_string, req.headers,
                req.body if self.log_bodies else b"", status))
        for entry in self._pending_writes.pop(id(req), []):
            entry.seq = seq

    # -- routes ----------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Handler]]:
        table: list[tuple[str, str, Callable[[Request], Any]]] = [
            ("GET", API + r"/field(?:/translate/(?P<lang>\w+))?/?", self._list_fields),
            ("POST", API + r"/field/?", self._create_field),
            ("GET", API + r"/field/(?P<fid>\d+)/choice(?:/translate/(?P<lang>\w+))?/?",
             self._list_choices),
            ("GET", API + r"/contactlist/?", self._list_lists),
            ("POST", API + r"/contactlist/?", self._create_list),
            ("POST", API + r"/contactlist/(?P<lid>\d+)/add/?", self._add_to_list),
            ("POST", API + r"/contactlist/(?P<lid>\d+)/delete/?", self._remove_from_list),
            ("GET", API + r"/contactlist/(?P<lid>\d+)(?:/contacts)?/?", self._list_contacts),
            ("PUT", API + r"/contact/?", self._upsert),
            ("POST", API + r"/contact/?", self._create_contacts),
            ("POST", API + r"/contact/getdata/?", self._getdata),
            ("POST", API + r"/contact/checkids/?", self._checkids),
            ("POST", API + r"/contact/delete/?", self._delete_contacts),
            ("POST", API + r"/contact/getchanges/?", self._getchanges),
            ("POST", API + r"/email/getresponses/?", self._getresponses),
            ("GET", API + r"/export/(?P<eid>\d+)/?", self._export_status),
            ("GET", API + r"/export/(?P<eid>\d+)/data/?", self._export_data),
        ]
        routes = [(m, p, _enveloped(h)) for m, p, h in table]
        routes.append(("POST", r"/oauth2/token/?", self._token))
        return routes

    def _token(self, req: Request) -> Response:
        if not self.tokens.check_client(req.header("Authorization")):
            return Response.json({"error": "invalid_client"}, 401,
                                 {"WWW-Authenticate": 'Basic realm="emarsys"'})
        form = dict(parse_qsl(req.body.decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            return Response.json({"error": "unsupported_grant_type"}, 400)
        return Response.json(self.tokens.issue())

    def _list_fields(self, req: Request) -> Any:
        with self.account.lock:
            return [f.as_json() for f in sorted(self.account.fields.values(),
                                                key=lambda f: f.id)]

    def _create_field(self, req: Request) -> Any:
        body = _json_object(req)
        fld = self.account.create_field(str(body.get("name") or ""),
                                        str(body.get("application_type") or ""))
        return {"id": fld.id}

    def _list_choices(self, req: Request) -> Any:
        fld = self.account.fields.get(int(req.params["fid"]))
        if fld is None or fld.choices is None:
            raise RequestFailed(400, 2006, f"Not a single-choice field: {req.params['fid']}")
        return [{"id": str(cid), "choice": label} for cid, label in fld.choices.items()]

    def _list_lists(self, req: Request) -> Any:
        with self.account.lock:
            return [{"id": str(lst.id), "name": lst.name, "created": ""}
                    for lst in self.account.lists.values()]

    def _create_list(self, req: Request) -> Any:
        body = _json_object(req)
        name = str(body.get("name") or "").strip()
        if not name:
            raise RequestFailed(400, 3001, "A contact list needs a name")
        list_id, errors = self.account.create_list(
            name, body.get("key_id", "3"), _id_list(body.get("external_ids")))
        return {"id": list_id, "errors": errors} if errors else {"id": list_id}

    def _add_to_list(self, req: Request) -> Any:
        body = _json_object(req)
        inserted, errors = self.account.add_to_list(
            int(req.params["lid"]), body.get("key_id", "3"), _id_list(body.get("external_ids")))
        data: dict[str, Any] = {"inserted_contacts": inserted}
        if errors:
            data["errors"] = errors
        return data

    def _remove_from_list(self, req: Request) -> Any:
        body = _json_object(req)
        removed, errors = self.account.remove_from_list(
            int(req.params["lid"]), body.get("key_id", "3"), _id_list(body.get("external_ids")))
        return {"deleted_contacts": removed, "errors": errors}

    def _list_contacts(self, req: Request) -> Any:
        try:
            return [str(cid) for cid in self.account.list_members(int(req.params["lid"]))]
        except KeyError:
            raise RequestFailed(404, 3004, f"Contact list does not exist: "
                                           f"{req.params['lid']}") from None

    def _upsert(self, req: Request, *, create_only: bool = False) -> Any:
        if len(req.body) > MAX_BODY_BYTES:
            raise RequestFailed(400, 1000, "The request is larger than 8 MB")
        body = _json_object(req)
        contacts = body.get("contacts")
        if not isinstance(contacts, list) or not contacts:
            raise RequestFailed(400, 1001, "contacts must be a non-empty list")
        if len(contacts) > MAX_CONTACTS:
            raise RequestFailed(400, 1000, f"At most {MAX_CONTACTS} contacts per request")
        create = dict(req.query).get("create_if_not_exists") == "1"
        result = self.account.upsert(
            body.get("key_id", "3"), contacts, create=create, create_only=create_only,
            list_id=_list_id(body.get("contact_list_id")))
        self._pending_writes[id(req)] = result.writes
        data: dict[str, Any] = {"ids": result.ids}
        if result.errors:
            data["errors"] = result.errors
        return data

    def _create_contacts(self, req: Request) -> Any:
        return self._upsert(req, create_only=True)

    def _getdata(self, req: Request) -> Any:
        body = _json_object(req)
        keys = body.get("keyValues")
        if not isinstance(keys, list):
            raise RequestFailed(400, 1001, "keyValues must be a list")
        if len(keys) > MAX_GETDATA_KEYS:
            raise RequestFailed(400, 1000, f"At most {MAX_GETDATA_KEYS} keyValues per request")
        fields = body.get("fields") or []
        result, errors = self.account.get_data(body.get("keyId", "3"), keys,
                                               fields if isinstance(fields, list) else [])
        return {"result": result, "errors": errors}

    def _checkids(self, req: Request) -> Any:
        body = _json_object(req)
        ids, errors = self.account.check_ids(body.get("key_id", "3"),
                                             _id_list(body.get("external_ids")),
                                             body.get("get_multiple_ids") is True)
        return {"ids": ids, "errors": errors}

    def _delete_contacts(self, req: Request) -> Any:
        body = _json_object(req)
        key_id = str(body.get("key_id") or "")
        if not key_id:
            raise RequestFailed(400, 1001, "key_id is required")
        values = body.get(key_id)
        if not isinstance(values, list):  # the values travel under the key id's own name
            raise RequestFailed(400, 1001, f'The values to delete go in "{key_id}": [...]')
        deleted, errors, entries = self.account.delete_contacts(key_id, values)
        self._pending_writes[id(req)] = entries
        return {"deleted_contacts": deleted, "errors": errors}

    def _getresponses(self, req: Request) -> Any:
        export = self.exports.create_responses_export(self.account, _json_object(req))
        return {"id": export.id}

    def _getchanges(self, req: Request) -> Any:
        export = self.exports.create_changes_export(self.account, _json_object(req))
        return {"id": export.id}

    def _export_status(self, req: Request) -> Any:
        return self.exports.status_json(int(req.params["eid"]))

    def _export_data(self, req: Request) -> Response:
        query = dict(req.query)
        try:
            offset = max(0, int(query.get("offset") or 0))
            limit = int(query["limit"]) if query.get("limit") else None
        except ValueError:
            raise RequestFailed(400, 10001, "offset and limit must be integers") from None
        text = self.exports.data_csv(int(req.params["eid"]), offset, limit)
        return Response(200, text.encode(), "text/csv; charset=utf-8")

    # -- control plane -----------------------------------------------------------------
    def control_routes(self) -> list[tuple[str, str, Handler]]:
        return build_control_routes(self)


def _enveloped(handler: Callable[[Request], Any]) -> Handler:
    """Wrap a handler returning data (or a Response) into the envelope; map RequestFailed."""
    def run(req: Request) -> Response:
        try:
            data = handler(req)
        except RequestFailed as exc:
            return reply(status=exc.status, code=exc.code, text=exc.text)
        return data if isinstance(data, Response) else reply(data)
    return run


def _json_object(req: Request) -> dict[str, Any]:
    try:
        body = req.json()
    except ValueError:
        raise RequestFailed(400, 10001, "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestFailed(400, 10001, "The request body must be a JSON object")
    return body


def _list_id(value: Any) -> int | None:
    """An upsert's ``contact_list_id``; one that is no list id at all is 2020 too."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not str(value).isdecimal():
        raise RequestFailed(400, 2020, f"Invalid contact list id: {value!r}")
    return int(value)


def _id_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestFailed(400, 1001, "external_ids must be a list")
    return value
