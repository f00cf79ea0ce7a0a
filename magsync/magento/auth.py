"""Magento authentication as ``requests`` auth objects, run afresh on every attempt.

OAuth 1.0a (HMAC-SHA256, the four credentials of an integration) signs each request
with a new nonce and timestamp, so a retried request is signed again rather than
replayed. Bearer sends the integration's access token alone, which Magento accepts only
when ``oauth/consumer/enable_integration_as_bearer`` is on.
"""

from __future__ import annotations

import requests
from oauthlib.common import extract_params
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, SIGNATURE_TYPE_AUTH_HEADER, Client
from requests.auth import AuthBase

from magsync.config import MagentoAuth, Secret
from magsync.errors import ConfigError

BEARER_HELP = (
    "with auth.method: bearer Magento accepts the integration's access token only when "
    "the store allows it (Stores > Configuration > Services > OAuth > Consumer Settings > "
    "Allow OAuth Access Tokens to be used as standalone Bearer tokens = Yes; config path "
    "oauth/consumer/enable_integration_as_bearer), otherwise it answers exactly as if the "
    "integration lacked the Magento_Customer::customer resource. Either enable that "
    "setting (and check the integration's resources), or use auth.method: oauth1 with the "
    "integration's consumer key/secret and access token/secret"
)


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "BearerAuth('***')"


FORM = "application/x-www-form-urlencoded"


class OAuth1Text(AuthBase):
    """OAuth 1.0a signing as requests-oauthlib's ``OAuth1`` does it (oauthlib's client,
    the body signed only when form-encoded), with a ``str`` Authorization header: code
    that reads request headers (redaction of error messages) expects text. Built on
    oauthlib directly, since importing requests-oauthlib also loads all of its OAuth 2.0
    support, which every minutely run would pay for."""

    def __init__(self, client_key: str, *, client_secret: str, resource_owner_key: str,
                 resource_owner_secret: str) -> None:
        self.client = Client(client_key, client_secret=client_secret,
                             resource_owner_key=resource_owner_key,
                             resource_owner_secret=resource_owner_secret,
                             signature_method=SIGNATURE_HMAC_SHA256,
                             signature_type=SIGNATURE_TYPE_AUTH_HEADER)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        content_type = r.headers.get("Content-Type", "")
        if isinstance(content_type, bytes):
            content_type = content_type.decode("utf-8")
        if not content_type and extract_params(r.body):
            content_type = FORM
        if FORM in content_type:
            r.headers["Content-Type"] = FORM
            url, headers, r.body = self.client.sign(str(r.url), str(r.method),
                                                    r.body or "", r.headers)
        else:  # a JSON body is not part of the signature
            url, headers, _ = self.client.sign(str(r.url), str(r.method), None, r.headers)
        r.prepare_headers(headers)
        r.url = url if isinstance(url, str) else url.decode("ascii")
        value = r.headers.get("Authorization")
        if isinstance(value, bytes):
            r.headers["Authorization"] = value.decode("ascii")
        return r

    def __repr__(self) -> str:
        return "OAuth1Text('***')"


def build_auth(auth: MagentoAuth) -> AuthBase:
    """The auth object for the configured method (``oauth1`` or ``bearer``)."""
    if auth.method == "bearer":
        return BearerAuth(_reveal(auth.token, "token"))
    if auth.method != "oauth1":
        raise ConfigError(f"magento.auth.method: unknown method {auth.method!r}",
                          hint="use oauth1 or bearer")
    # oauthlib signs the query string exactly as it is sent: the bracketed
    # searchCriteria keys are decoded once and re-encoded once in the base string.
    return OAuth1Text(_reveal(auth.consumer_key, "consumer_key"),
                      client_secret=_reveal(auth.consumer_secret, "consumer_secret"),
                      resource_owner_key=_reveal(auth.access_token, "access_token"),
                      resource_owner_secret=_reveal(auth.access_token_secret,
                                                    "access_token_secret"))


def auth_secrets(auth: MagentoAuth) -> list[str]:
    """Every credential value, for redaction."""
    values = (auth.consumer_key, auth.consumer_secret, auth.access_token,
              auth.access_token_secret, auth.token)
    return [v.reveal() for v in values if v is not None and v.reveal()]


def _reveal(secret: Secret | None, name: str) -> str:
    if secret is None or not secret.reveal():
        raise ConfigError(f"magento.auth.{name}: is required")
    return secret.reveal()
