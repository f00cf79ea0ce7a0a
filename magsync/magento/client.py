"""The Magento REST client: one ``HttpClient`` session plus Magento's error language.

Retries live in ``magsync.http``; this module turns every answer that is not a success
into an error the shop admin can act on: Magento's ``%placeholder`` messages filled in,
a 503 HTML page called maintenance mode, a 404 under ``/V1/emarsys/`` called a missing
module, a 500 with its report id, a bearer 401 explained.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests

from magsync.config import MagentoConfig
from magsync.errors import (
    AuthError,
    FatalRemoteError,
    RemoteConfigError,
    RemoteError,
    RetriableError,
)
from magsync.http import HttpClient
from magsync.magento.auth import BEARER_HELP, auth_secrets, build_auth
from magsync.magento.search import SearchCriteria, encode_query
from magsync.network import clip, fit, host_of
from magsync.pacing import Abort, RetryPolicy
from magsync.util import jsoncodec

SERVICE = "Magento"
NOT_AUTHORIZED = "consumer isn't authorized"
MODULE_HELP = ("magento.subscribers: emarsys-module needs the Emarsys Magento 2 module "
               "(Emartech_Emarsys) installed and enabled, with the integration granted "
               "its Emartech_Emarsys::api_subscriptions resource; or read subscribers "
               "from Magento's database (magento.subscribers: database), or set "
               "magento.subscribers: none to take customers' opt-in from "
               "extension_attributes.is_subscribed")
BASE_URL_HELP = ("check magento.base_url: the shop's address without /rest (the REST API "
                 "lives under {base_url}/rest/{store_code}/V1)")
NO_ROUTE = "does not match any route"
MAINTENANCE_HELP = ("wait until the shop leaves maintenance mode "
                    "(bin/magento maintenance:status); the next run will try again")
_PLACEHOLDER = re.compile(r"%(\w+)")
_REPORT_ID = re.compile(r"Report ID:\s*([\w.-]+)")
_GAVE_UP = re.compile(r"HTTP (\d{3})\b ?(.*)$", re.DOTALL)


class MagentoClient:
    """Magento's REST API under ``{base_url}/rest/{store_code}/V1``."""

    def __init__(self, cfg: MagentoConfig, http: HttpClient) -> None:
        self.cfg = cfg
        self.http = http

    @classmethod
    def from_config(cls, cfg: MagentoConfig, *, retry: RetryPolicy | None = None,
                    sleep: Callable[[float], None] = time.sleep,
                    secrets: Iterable[str] = (), abort: Abort | None = None
                    ) -> MagentoClient:
        """A client with the configured auth, timeout and a pool for the read threads;
        ``abort`` is the run's stop signal when it has one (see ``http.Abort``)."""
        http = HttpClient(SERVICE, cfg.rest_url, auth=build_auth(cfg.auth),
                          timeout=cfg.timeout, retry=retry or RetryPolicy(),
                          secrets=[*auth_secrets(cfg.auth), *secrets],
                          pool_size=cfg.concurrency + 2, sleep=sleep,
                          setting="magento.base_url", abort=abort)
        return cls(cfg, http)

    def with_retry(self, retry: RetryPolicy) -> MagentoClient:
        """The same session with another retry budget (e.g. 15 s for sync-realtime)."""
        return MagentoClient(self.cfg, self.http.with_retry(retry))

    def close(self) -> None:
        """Close the pooled connections."""
        self.http.close()

    def __enter__(self) -> MagentoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, path: str, criteria: SearchCriteria, *, fields: str | None = None
               ) -> dict[str, Any]:
        """GET a ``.../search`` endpoint with searchCriteria; the decoded reply.

        ``fields`` is Magento's response filter (``items[id,email]``); Magento answers a
        filter it cannot parse with ``[]``, which is refused here as an unexpected body.
        """
        pairs = criteria.pairs() + ([("fields", fields)] if fields else [])
        reply = self.call("GET", f"{path}?{encode_query(pairs)}")
        if fields and isinstance(reply, dict) and "items" in reply and reply["items"] is None:
            # FieldsFilter turns an empty list under a nested filter into null.
            reply["items"] = []
        if not isinstance(reply, dict) or not isinstance(reply.get("items", []), list):
            raise FatalRemoteError(f"Magento answered {path} with an unexpected body",
                                   service=SERVICE)
        return reply

    def call(self, method: str, path: str, *, params: Any = None, body: Any = None,
             missing_ok: bool = False) -> Any:
        """One request; the decoded JSON reply, or None for a 404 when ``missing_ok``.

        ``path`` is relative to ``/V1`` and may carry an already encoded query string.
        """
        try:
            resp = self.http.request(method, path, params=params, json=body,
                                     headers={"Accept": "application/json"})
        except RetriableError as exc:
            raise explain_gave_up(exc, path) from None
        try:
            if missing_ok and resp.status_code == 404:
                return None
            if resp.status_code >= 400:
                raise self.error_for(resp, path)
            return decode_json(resp, path)
        finally:
            resp.close()

    def error_for(self, resp: requests.Response, path: str) -> RemoteError:
        """The error an unsuccessful reply stands for (one line, redacted with the
        request's own credential headers: a server may echo them)."""
        status = resp.status_code
        message = self.http.redact(magento_message(resp), resp.request.headers)
        where = f"{resp.request.method} /V1/{path.split('?')[0].lstrip('/')}"
        host = host_of(resp.url)
        if status == 401 or status == 403:
            return self._auth_error(status, clip(message, 120), clip(where, 70))
        if status == 404 and _is_module_path(path):
            return RemoteConfigError(f"the Emarsys Magento module's API is missing "
                                     f"({where}: HTTP 404 {clip(message, 100)})",
                                     service=SERVICE, status=404, hint=MODULE_HELP)
        if status == 404 and NO_ROUTE in message.lower():
            text, hint = fit(f"Magento at {host} has no REST route for {where} (HTTP 404 "
                             "\"{detail}\")", BASE_URL_HELP, detail=message)
            return FatalRemoteError(text, service=SERVICE, status=404, hint=hint)
        if status == 503 and looks_like_html(resp):
            return maintenance_error(503)
        if status >= 500:
            text, hint = fit(f"Magento at {host} failed {where}: HTTP {status} {{detail}}",
                             report_hint(message), detail=message)
            return RetriableError(text, service=SERVICE, status=status, hint=hint)
        text, _ = fit(f"Magento at {host} refused {where}: HTTP {status} {{detail}}", None,
                      detail=message)
        return FatalRemoteError(text, service=SERVICE, status=status)

    def _auth_error(self, status: int, message: str, where: str) -> AuthError:
        if self.cfg.auth.method == "bearer" and NOT_AUTHORIZED in message.lower():
            return AuthError(f"Magento refused the bearer token ({where}: HTTP {status} "
                             f"\"{message}\"); this usually does not mean a missing "
                             "permission", service=SERVICE, status=status, hint=BEARER_HELP)
        if NOT_AUTHORIZED in message.lower():
            resource = ("Emartech_Emarsys::api_subscriptions" if _is_module_path(where)
                        else "Magento_Customer::customer and Magento_Customer::manage")
            return AuthError(f"the Magento integration lacks a permission ({where}: HTTP "
                             f"{status} \"{message}\")", service=SERVICE, status=status,
                             hint=f"System > Integrations > (this integration) > API: grant "
                                  f"{resource}, then re-authorize the integration")
        return AuthError(f"Magento refused the credentials ({where}: HTTP {status} "
                         f"\"{message}\")", service=SERVICE, status=status,
                         hint="check magento.auth (the integration's consumer key/secret "
                              "and access token/secret) and that the integration is active")


def fill_placeholders(message: str, parameters: Any) -> str:
    """Magento's ``%name`` (dict parameters) and ``%1 %2`` (positional list) filled in."""
    if isinstance(parameters, dict):
        lookup = {str(k): v for k, v in parameters.items()}
    elif isinstance(parameters, list):
        lookup = {str(i + 1): v for i, v in enumerate(parameters)}
    else:
        return message

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        return str(lookup[key]) if key in lookup else m.group(0)
    return _PLACEHOLDER.sub(sub, message)


def magento_message(resp: requests.Response) -> str:
    """The human message of an error reply (JSON or not), placeholders filled."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = fill_placeholders(body["message"], body.get("parameters"))
        extra = [fill_placeholders(e.get("message", ""), e.get("parameters"))
                 for e in body.get("errors") or [] if isinstance(e, dict)]
        return "; ".join([text, *[e for e in extra if e and e != text]])
    text = resp.text if not looks_like_html(resp) else re.sub(r"<[^>]+>", " ", resp.text)
    # not cut short here: the caller redacts first, then clips (a cut must not split a
    # secret the page echoes)
    return " ".join(text[:65536].split())


def looks_like_html(resp: requests.Response) -> bool:
    """True for an HTML page (maintenance mode, a proxy's error page)."""
    ctype = resp.headers.get("Content-Type", "").lower()
    return "html" in ctype or resp.text.lstrip()[:1] == "<"


def maintenance_error(status: int | None = 503) -> RetriableError:
    """The error for Magento's maintenance page."""
    return RetriableError("Magento is in maintenance mode (HTTP 503 with an HTML page)",
                          service=SERVICE, status=status, hint=MAINTENANCE_HELP)


def report_hint(message: str) -> str | None:
    """Where to look for a 500's details, naming Magento's report id."""
    m = _REPORT_ID.search(message)
    if m is None:
        return "see Magento's var/log/exception.log for the details"
    return f"Magento logged the details under report id {m.group(1)} (var/report/ or " \
           "var/log/exception.log)"


def explain_gave_up(exc: RetriableError, path: str) -> RetriableError:
    """Reword the session's give-up error when its last answer says more (maintenance,
    a report id); keeps it retriable (exit 3)."""
    m = _GAVE_UP.search(exc.detail or exc.message)
    if m is None or exc.service != SERVICE:  # another service's failure stopped the run
        return exc
    status, body = int(m.group(1)), m.group(2)
    if status == 503 and "<" in body:
        err = maintenance_error(status)
        tried = re.search(r"after \d+ attempts? in \d+ s", exc.message)
        if tried:
            err.message += f" ({tried.group(0)})"
        return err
    report = _REPORT_ID.search(body)
    if report is not None:
        return RetriableError(exc.message, service=SERVICE, status=status,
                              hint=report_hint(body), detail=exc.detail)
    return RetriableError(exc.message, service=SERVICE, status=status, hint=exc.hint,
                          detail=exc.detail)


def decode_json(resp: requests.Response, path: str) -> Any:
    """The reply's JSON; a FatalRemoteError when it is not JSON."""
    if not resp.content:
        return None
    try:
        return jsoncodec.loads(resp.content)
    except ValueError:
        if looks_like_html(resp):
            raise FatalRemoteError(
                f"Magento answered {path.split('?')[0]} with an HTML page instead of JSON",
                service=SERVICE, status=resp.status_code,
                hint="check magento.base_url and store_code (the REST API lives under "
                     "{base_url}/rest/{store_code}/V1)") from None
        raise FatalRemoteError(f"Magento answered {path.split('?')[0]} with invalid JSON",
                               service=SERVICE, status=resp.status_code) from None


def _is_module_path(path: str) -> bool:
    return re.search(r"(?:^|/)emarsys/", path.split("?")[0]) is not None
