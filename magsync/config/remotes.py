"""The ``magento:`` and ``emarsys:`` sections: where the two APIs are, how magsync
authenticates to them (and to Magento's database), and the Emarsys key fields."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from magsync.config.reader import Reader, kind
from magsync.config.rules import read_url, url_problem
from magsync.config.schema import (
    SUBSCRIBER_SOURCES,
    DatabaseConfig,
    EmarsysAuth,
    EmarsysConfig,
    FieldRef,
    KeyFields,
    MagentoAuth,
    MagentoConfig,
)

M, E = MagentoConfig, EmarsysConfig  # their defaults are the loader's


def parse_magento(r: Reader, raw: dict[str, Any]) -> MagentoConfig:
    p = "magento"
    r.known(raw, p, ("base_url", "store_code", "auth", "page_size", "website_ids",
                     "subscribers", "database", "timeout", "concurrency"))
    base_url = read_url(r, raw, "base_url", p, required=True) or ""
    auth_raw = r.section(raw, "auth", path=p)
    ap = f"{p}.auth"
    method, ar = _auth_method(r, auth_raw, ap, ("oauth1", "bearer"))
    if method == "bearer":
        ar.known(auth_raw, ap, ("method", "token"))
        auth = MagentoAuth(method="bearer",
                           token=ar.secret(auth_raw, "token", ap, required=True))
    else:
        ar.known(auth_raw, ap, ("method", "consumer_key", "consumer_secret", "access_token",
                                "access_token_secret"))
        auth = MagentoAuth(
            method="oauth1",
            consumer_key=ar.secret(auth_raw, "consumer_key", ap, required=True),
            consumer_secret=ar.secret(auth_raw, "consumer_secret", ap, required=True),
            access_token=ar.secret(auth_raw, "access_token", ap, required=True),
            access_token_secret=ar.secret(auth_raw, "access_token_secret", ap, required=True))
    website_ids: tuple[int, ...] | None = None
    if raw.get("website_ids") is not None:
        ids = raw["website_ids"]
        if not isinstance(ids, list) or not ids or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            r.problem(f"{p}.website_ids", "must be a non-empty list of website ids, e.g. [1]")
        else:
            website_ids = tuple(ids)
    subscribers = r.string(raw, "subscribers", p, M.subscribers,
                           choices=SUBSCRIBER_SOURCES) or M.subscribers
    timeout = r.number(raw, "timeout", p, M.timeout, 1, 600)
    return MagentoConfig(
        base_url=base_url.rstrip("/"), auth=auth,
        store_code=r.string(raw, "store_code", p, M.store_code) or M.store_code,
        page_size=r.integer(raw, "page_size", p, M.page_size, 1, 300),
        website_ids=website_ids, subscribers=subscribers,
        database=_database(r, raw, subscribers, timeout),
        timeout=timeout,
        concurrency=r.integer(raw, "concurrency", p, M.concurrency, 1, 16))


def _database(r: Reader, raw: dict[str, Any], subscribers: str, timeout: float
              ) -> DatabaseConfig | None:
    """``magento.database``: required with ``subscribers: database``, ignored (with a
    warning) otherwise. The URL is checked here as a whole, never quoted in a message."""
    p = "magento.database"
    if subscribers != "database":
        if raw.get("database") is not None:
            r.warnings.append(f"{p} is ignored: magento.subscribers is {subscribers}, "
                              "not database")
        return None
    if raw.get("database") is None:
        r.problem(f"{p}.url", "is required with magento.subscribers: database "
                              "(mysql://user:${PASSWORD}@host:3306/database)")
    # Only a shop that reads its subscribers from the database needs the URL's rules.
    from magsync.config.database_url import DatabaseSettings, quote_password, validate_settings

    section = r.section(raw, "database", path="magento")
    r.known(section, p, ("url", "table_prefix", "write_optin"))
    url = r.url_secret(section, "url", p, quote=quote_password,
                       has_password=lambda u: bool(urlsplit(u).password)) \
        if section else None
    prefix = r.string(section, "table_prefix", p, "") or ""
    write_optin = r.boolean(section, "write_optin", p, False)
    if url is None:
        return None
    settings = DatabaseSettings(url=url.reveal(), table_prefix=prefix,
                                write_optin=write_optin, timeout=timeout)
    # The transport rule (mysql:// only; ?ssl=true for any host but loopback, or a unix
    # socket) is declared in the URL registry like every URL's; the driver's URL parser
    # checks it too, and says more (the host).
    found = [q for q in validate_settings(settings) if not q.startswith("timeout:")]
    r.problems += [f"{p}.{q}" for q in found]  # magento.timeout is checked above
    transport = url_problem(f"{p}.url", url.reveal())
    if transport and not any(q.startswith("url:") for q in found):
        r.problem(f"{p}.url", transport)  # one URL problem is enough: the first names more
    return DatabaseConfig(url=url, table_prefix=prefix, write_optin=write_optin)


def _auth_method(r: Reader, auth_raw: dict[str, Any], path: str, methods: tuple[str, ...]
                 ) -> tuple[str | None, Reader]:
    """The auth method (the first of ``methods`` by default), and the reader for the rest
    of the section: with a wrong method, which keys are missing or unknown is moot, so
    those findings go to a throwaway reader and only the method is reported."""
    before = len(r.problems)
    method = r.string(auth_raw, "method", path, methods[0], choices=methods)
    return method, (r if len(r.problems) == before else Reader(r.env))


def parse_emarsys(r: Reader, raw: dict[str, Any]) -> EmarsysConfig:
    p = "emarsys"
    r.known(raw, p, ("api_url", "auth", "batch_size", "requests_per_minute", "concurrency",
                     "timeout", "key_fields"))
    api_url = read_url(r, raw, "api_url", p, E.api_url) or ""
    auth_raw = r.section(raw, "auth", path=p)
    ap = f"{p}.auth"
    method, ar = _auth_method(r, auth_raw, ap, ("wsse", "oauth2"))
    if method == "oauth2":
        ar.known(auth_raw, ap, ("method", "client_id", "client_secret", "token_url"))
        auth = EmarsysAuth(
            method="oauth2",
            client_id=ar.secret(auth_raw, "client_id", ap, required=True),
            client_secret=ar.secret(auth_raw, "client_secret", ap, required=True),
            token_url=read_url(ar, auth_raw, "token_url", ap, EmarsysAuth.token_url)
            or EmarsysAuth.token_url)
    else:
        ar.known(auth_raw, ap, ("method", "username", "secret"))
        auth = EmarsysAuth(method="wsse",
                           username=ar.secret(auth_raw, "username", ap, required=True),
                           secret=ar.secret(auth_raw, "secret", ap, required=True))
    kf_raw = r.section(raw, "key_fields", path=p)
    kp = f"{p}.key_fields"
    r.known(kf_raw, kp, ("customer_id", "subscriber_id"))
    key_fields = KeyFields(
        customer_id=field_ref(r, kf_raw.get("customer_id", KeyFields.customer_id),
                               f"{kp}.customer_id"),
        subscriber_id=field_ref(r, kf_raw.get("subscriber_id", KeyFields.subscriber_id),
                                 f"{kp}.subscriber_id"))
    if key_fields.customer_id == key_fields.subscriber_id != "":
        r.problem(kp, "customer_id and subscriber_id must be two different Emarsys fields")
    return EmarsysConfig(
        auth=auth, api_url=api_url.rstrip("/"),
        batch_size=r.integer(raw, "batch_size", p, E.batch_size, 1, 1000),
        requests_per_minute=r.integer(raw, "requests_per_minute", p, E.requests_per_minute, 1,
                                      100000),
        concurrency=r.integer(raw, "concurrency", p, E.concurrency, 1, 32),
        timeout=r.number(raw, "timeout", p, E.timeout, 1, 600),
        key_fields=key_fields)


def field_ref(r: Reader, value: Any, path: str) -> FieldRef:
    if isinstance(value, bool) or value is None:
        r.problem(path, "must be an Emarsys field id or name")
        return ""
    if isinstance(value, int):
        if value < 0:
            r.problem(path, "a field id must not be negative")
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            r.problem(path, "must not be empty")
        return int(text) if text.isdigit() else text
    r.problem(path, f"must be an Emarsys field id or name, not {kind(value)}")
    return ""
