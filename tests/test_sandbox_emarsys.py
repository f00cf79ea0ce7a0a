"""The Emarsys sandbox: authentication, fields and choices, rate limits, faults, control plane.

Contacts, lists, getdata and getchanges are in test_sandbox_emarsys_contacts.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from magsync.sandbox.emarsys.auth import wsse_digest, wsse_header
from magsync.sandbox.emarsys.server import EmarsysSandbox

T0 = dt.datetime(2026, 5, 2, 10, 0, tzinfo=dt.timezone.utc).timestamp()


class FakeClock:
    """A clock tests move by hand, so nothing waits for real time."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    """Minimal WSSE caller for the sandbox (the real client lives in magsync.emarsys)."""

    def __init__(self, sb: EmarsysSandbox) -> None:
        self.sb = sb
        self.http = requests.Session()

    def headers(self) -> dict[str, str]:
        return {"X-WSSE": wsse_header(self.sb.username, self.sb.secret,
                                      created=iso(self.sb.clock()))}

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, self.sb.api_url + path, headers=self.headers(),
                                 timeout=10, **kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sb(clock: FakeClock) -> Iterator[EmarsysSandbox]:
    with EmarsysSandbox(clock=clock, rate_limit=5, rate_window=10.0) as server:
        assert isinstance(server, EmarsysSandbox)
        yield server


@pytest.fixture
def api(sb: EmarsysSandbox) -> Api:
    return Api(sb)


# -- WSSE ---------------------------------------------------------------------------
VECTOR = ("d36e316282959a9ed4c89851497a717f", "2014-03-20T12:51:45Z", "customersecret")


def test_wsse_digest_matches_the_api_notes_vector() -> None:
    assert hashlib.sha1("".join(VECTOR).encode()).hexdigest() == \
        "ad25a9cbd966e558863d375a46edd0f89b6ee98c"
    assert wsse_digest(*VECTOR) == "YWQyNWE5Y2JkOTY2ZTU1ODg2M2QzNzVhNDZlZGQwZjg5YjZlZTk4Yw=="


def test_the_vector_header_is_accepted_at_its_own_time() -> None:
    nonce, created, secret = VECTOR
    at = dt.datetime(2014, 3, 20, 12, 53, tzinfo=dt.timezone.utc).timestamp()
    with EmarsysSandbox(username="customer", secret=secret, clock=lambda: at) as sb:
        header = ('UsernameToken Username="customer", PasswordDigest='
                  '"YWQyNWE5Y2JkOTY2ZTU1ODg2M2QzNzVhNDZlZGQwZjg5YjZlZTk4Yw==", '
                  f'Nonce="{nonce}", Created="{created}"')
        r = requests.get(sb.url + "/api/v2/field", headers={"X-WSSE": header}, timeout=10)
    assert r.status_code == 200
    assert r.json()["replyCode"] == 0


def test_a_correct_wsse_request_is_accepted(api: Api) -> None:
    r = api.call("GET", "/field")
    assert r.status_code == 200
    body = r.json()
    assert (body["replyCode"], body["replyText"]) == (0, "OK")
    assert {"id": "3", "name": "E-Mail", "application_type": "shorttext",
            "string_id": "email"} in body["data"]


def _raw_header(sb: EmarsysSandbox, digest: str, nonce: str, created: str) -> dict[str, str]:
    return {"X-WSSE": f'UsernameToken Username="{sb.username}", PasswordDigest="{digest}", '
                      f'Nonce="{nonce}", Created="{created}"'}


def test_base64_of_the_raw_sha1_bytes_is_refused(sb: EmarsysSandbox) -> None:
    nonce, created = "a" * 32, iso(sb.clock())
    raw = hashlib.sha1((nonce + created + sb.secret).encode()).digest()
    r = requests.get(sb.api_url + "/field", timeout=10,
                     headers=_raw_header(sb, base64.b64encode(raw).decode(), nonce, created))
    assert r.status_code == 401
    assert r.json()["replyCode"] == 1


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_a_created_outside_five_minutes_is_refused(sb: EmarsysSandbox, skew: int) -> None:
    nonce, created = "b" * 32, iso(sb.clock() + skew)
    header = _raw_header(sb, wsse_digest(nonce, created, sb.secret), nonce, created)
    r = requests.get(sb.api_url + "/field", headers=header, timeout=10)
    assert (r.status_code, r.json()["replyCode"]) == (401, 1)


def test_a_created_within_five_minutes_is_accepted(sb: EmarsysSandbox) -> None:
    nonce, created = "c" * 32, iso(sb.clock() - 290)
    header = _raw_header(sb, wsse_digest(nonce, created, sb.secret), nonce, created)
    assert requests.get(sb.api_url + "/field", headers=header, timeout=10).status_code == 200


def test_a_reused_nonce_is_refused_for_ten_minutes(sb: EmarsysSandbox, clock: FakeClock
                                                   ) -> None:
    def send() -> int:
        created = iso(clock())
        header = _raw_header(sb, wsse_digest("n" * 32, created, sb.secret), "n" * 32, created)
        return requests.get(sb.api_url + "/field", headers=header, timeout=10).status_code

    assert send() == 200
    assert send() == 401
    clock.advance(599)
    assert send() == 401
    clock.advance(602)
    assert send() == 200


@pytest.mark.parametrize("header", [
    {}, {"X-WSSE": "garbage"},
    {"X-WSSE": wsse_header("sandbox", "wrong-secret")},
    {"X-WSSE": wsse_header("someone-else", "sandbox-secret")},
])
def test_bad_credentials_get_401_reply_code_1(header: dict[str, str]) -> None:
    with EmarsysSandbox() as sb:
        r = requests.get(sb.api_url + "/field", headers=header, timeout=10)
    assert r.status_code == 401
    assert r.json()["replyCode"] == 1


# -- OAuth 2.0 ------------------------------------------------------------------------
def _token(sb: EmarsysSandbox, secret: str | None = None, grant: str = "client_credentials"
           ) -> requests.Response:
    return requests.post(sb.token_url, data={"grant_type": grant}, timeout=10,
                         auth=(sb.client_id, secret or sb.client_secret))


def test_oauth2_token_works_on_v3_until_it_expires(clock: FakeClock) -> None:
    with EmarsysSandbox(clock=clock, token_lifetime=120) as sb:
        r = _token(sb)
        assert r.status_code == 200
        token = r.json()
        assert token["token_type"].lower() == "bearer" and token["expires_in"] == 120
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        assert requests.get(sb.api_url_v3 + "/field", headers=auth, timeout=10).json()[
            "replyCode"] == 0
        clock.advance(121)
        r = requests.get(sb.api_url_v3 + "/field", headers=auth, timeout=10)
        assert (r.status_code, r.json()["replyCode"]) == (401, 1)
        fresh = {"Authorization": f"Bearer {_token(sb).json()['access_token']}"}
        assert requests.get(sb.api_url_v3 + "/field", headers=fresh, timeout=10).ok
        sb.expire_tokens()
        assert requests.get(sb.api_url_v3 + "/field", headers=fresh, timeout=10
                            ).status_code == 401


def test_oauth2_refuses_bad_clients_grants_and_tokens(sb: EmarsysSandbox, api: Api) -> None:
    assert _token(sb, secret="nope").status_code == 401
    assert _token(sb, grant="password").status_code == 400
    bogus = {"Authorization": "Bearer not-a-token"}
    assert requests.get(sb.api_url_v3 + "/field", headers=bogus, timeout=10).status_code == 401
    # v3 wants a bearer token, v2 wants WSSE: each refuses the other's credentials.
    assert requests.get(sb.api_url_v3 + "/field", headers=api.headers(), timeout=10
                        ).status_code == 401
    good = {"Authorization": f"Bearer {_token(sb).json()['access_token']}"}
    assert requests.get(sb.api_url + "/field", headers=good, timeout=10).status_code == 401


# -- fields and choices ---------------------------------------------------------------
def test_fields_include_system_and_key_fields(api: Api) -> None:
    fields = {f["id"]: f for f in api.call("GET", "/field/translate/en").json()["data"]}
    for fid in ("1", "2", "3", "4", "5", "10", "11", "12", "13", "14", "15", "18", "31",
                "37", "46"):
        assert fid in fields
    assert fields["7001"]["name"] == "Magento Customer ID"
    assert fields["7002"]["application_type"] == "numeric"


def test_create_field_and_9002_on_a_taken_name(api: Api) -> None:
    r = api.call("POST", "/field", json={"name": "Loyalty tier", "application_type": "shorttext"})
    new_id = r.json()["data"]["id"]
    assert r.status_code == 200 and new_id > 7002
    names = {f["name"] for f in api.call("GET", "/field").json()["data"]}
    assert "Loyalty tier" in names
    r = api.call("POST", "/field", json={"name": "Magento Customer ID",
                                         "application_type": "numeric"})
    assert (r.status_code, r.json()["replyCode"]) == (400, 9002)
    r = api.call("POST", "/field", json={"name": "X", "application_type": "singlechoice"})
    assert r.status_code == 400


def test_a_sandbox_can_start_without_the_key_fields() -> None:
    with EmarsysSandbox(key_fields=False) as sb:
        api = Api(sb)
        names = {f["name"] for f in api.call("GET", "/field").json()["data"]}
        assert "Magento Customer ID" not in names
        r = api.call("POST", "/field", json={"name": "Magento Customer ID",
                                             "application_type": "numeric"})
        assert r.json()["data"]["id"] >= 7001


def test_gender_and_optin_choices(api: Api) -> None:
    assert api.call("GET", "/field/5/choice").json()["data"] == [
        {"id": "1", "choice": "Male"}, {"id": "2", "choice": "Female"}]
    assert api.call("GET", "/field/31/choice/translate/en").json()["data"] == [
        {"id": "1", "choice": "True"}, {"id": "2", "choice": "False"}]
    assert api.call("GET", "/field/1/choice").status_code == 400


def test_country_choices_use_emarsys_labels_and_unordered_ids(api: Api) -> None:
    choices = api.call("GET", "/field/14/choice/translate/en").json()["data"]
    labels = {c["choice"]: int(c["id"]) for c in choices}
    assert len(labels) >= 200
    for name in ("United States of America", "The Netherlands", "Korea, South",
                 "Korea, North", "Gambia, The", "Czech Republic", "Russia", "Vietnam",
                 "Iran", "Cote d'Ivoire", "Congo, Democratic Republic of the",
                 "St. Vincent and The Grenadines", "Germany", "United Kingdom"):
        assert name in labels, name
    assert "United States" not in labels and "Netherlands" not in labels
    by_label = [labels[name] for name in sorted(labels)]
    assert by_label != sorted(by_label)
    assert len(set(labels.values())) == len(labels)


# -- rate limits ----------------------------------------------------------------------
def test_every_reply_carries_rate_limit_headers_in_emarsys_casing(
        sb: EmarsysSandbox, api: Api) -> None:
    ok = api.call("GET", "/field")
    refused = requests.get(sb.api_url + "/field", timeout=10)
    sb.fail_next_error(1, 503)
    faulted = api.call("GET", "/field")
    for r in (ok, refused, faulted):
        names = list(r.headers.keys())
        assert {"X-RateLimit-Limit", "X-Ratelimit-Remaining", "X-RateLimit-Reset"} <= set(names)
    assert ok.headers["X-RateLimit-Limit"] == "5"
    assert ok.headers["X-Ratelimit-Remaining"] == "4"
    assert int(ok.headers["X-RateLimit-Reset"]) == int(sb.clock() + 10)


def test_past_the_limit_429_with_reset_and_early_requests_counted(
        sb: EmarsysSandbox, api: Api, clock: FakeClock) -> None:
    for _ in range(5):
        assert api.call("GET", "/field").status_code == 200
    r = api.call("GET", "/field")
    assert (r.status_code, r.json()["replyCode"]) == (429, 7003)
    assert r.headers["X-Ratelimit-Remaining"] == "0"
    reset = int(r.headers["X-RateLimit-Reset"])
    assert sb.early_requests == 0
    assert api.call("GET", "/field").status_code == 429  # did not wait
    assert sb.early_requests == 1
    clock.now = reset  # a client that waits until the announced reset
    assert api.call("GET", "/field").status_code == 200
    assert sb.early_requests == 1


def test_forced_429s_announce_a_reset_ahead(sb: EmarsysSandbox, api: Api,
                                            clock: FakeClock) -> None:
    sb.fail_next_429(2, reset_in=30)
    first = api.call("GET", "/field")
    assert first.status_code == 429
    assert int(first.headers["X-RateLimit-Reset"]) == int(clock() + 30)
    clock.advance(30)
    second = api.call("GET", "/field")
    assert second.status_code == 429 and sb.early_requests == 0
    # Exactly n forced 429s; a request before the announced reset is still early.
    assert api.call("GET", "/field").status_code == 200
    assert sb.early_requests == 1
    clock.advance(31)
    assert api.call("GET", "/field").status_code == 200
    assert sb.early_requests == 1


# -- faults ---------------------------------------------------------------------------
def test_5xx_and_423_faults_use_the_envelope(sb: EmarsysSandbox, api: Api) -> None:
    sb.fail_next_error(2, 500)
    sb.fail_next_error(1, 423, code=6003, text="Locked")
    assert [api.call("GET", "/field").status_code for _ in range(4)] == [500, 500, 423, 200]
    assert sb.requests("GET", r"/field$")[2].status == 423


def test_dropped_connections_and_latency(sb: EmarsysSandbox, api: Api) -> None:
    sb.faults.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        api.call("GET", "/field")
    sb.faults.set_latency(5)
    assert api.call("GET", "/field").status_code == 200
    assert [r.status for r in sb.requests(path_re="/field")] == [0, 200]


def test_control_plane_drives_and_inspects_the_sandbox(sb: EmarsysSandbox, api: Api) -> None:
    ctl = sb.url + "/_sandbox"
    ids = requests.post(ctl + "/contacts", json={"contacts": [
        {"3": "seed@example.com", "31": 1}]}, timeout=10).json()["ids"]
    found = requests.get(ctl + "/contacts", params={"field": 3, "value": "SEED@example.com"},
                         timeout=10).json()
    assert found == [{"id": str(ids[0]), "3": "seed@example.com", "31": "1"}]
    requests.post(ctl + "/emarsys-faults", json={"rate_limit_next": 1, "reset_in": 5,
                                                 "error_next": 1, "status": 423}, timeout=10)
    assert api.call("GET", "/field").status_code == 423
    assert api.call("GET", "/field").status_code == 429
    requests.post(f"{ctl}/contacts/{ids[0]}/ui_edit", json={"fields": {"31": 2}}, timeout=10)
    one = requests.get(f"{ctl}/contacts/{ids[0]}", timeout=10).json()
    assert one["fields"]["31"] == "2" and one["writes"] == []
    state = requests.get(ctl + "/state", timeout=10).json()
    assert state["contacts"] == 1 and state["changes"] == 1 and state["rate_limited"] == 1
