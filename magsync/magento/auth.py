"""Magento authentication as ``requests`` auth objects, run afresh on every attempt.

OAuth 1.0a (HMAC-SHA256, the four credentials of an integration) signs each request
with a new nonce and timestamp, so a retried request is signed again rather than
replayed. Bearer sends the integration's access token alone, which Magento accepts only
when ``oauth/consumer/enable_integration_as_bearer`` is on.
"""

from __future__ import annotations

import requests
from requests.auth import AuthBase
from requests_oauthlib import OAuth1

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


class OAuth1Text(OAuth1):
    """requests-oauthlib's OAuth1 with a ``str`` Authorization header.

    oauthlib hands back ``bytes``; code that reads request headers (redaction of error
    messages) expects text.
    """

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r = super().__call__(r)
        value = r.headers.get("Authorization")
        if isinstance(value, bytes):
            r.headers["Authorization"] = value.decode("ascii")
        return r


def build_auth(auth: MagentoAuth) -> AuthBase:
    """The auth object for the configured method (``oauth1`` or ``bearer``)."""
    if auth.method == "bearer":
        return BearerAuth(_reveal(auth.token, "token"))
    if auth.method != "oauth1":
        raise ConfigError(f"magento.auth.method: unknown method {auth.method!r}",
                          hint="use oauth1 or bearer")
    # requests-oauthlib signs the query string exactly as it is sent: the bracketed
    # searchCriteria keys are decoded once and re-encoded once in the base string.
    return OAuth1Text(_reveal(auth.consumer_key, "consumer_key"),
                  client_secret=_reveal(auth.consumer_secret, "consumer_secret"),
                  resource_owner_key=_reveal(auth.access_token, "access_token"),
                  resource_owner_secret=_reveal(auth.access_token_secret,
                                                "access_token_secret"),
                  signature_method="HMAC-SHA256", signature_type="AUTH_HEADER")


def auth_secrets(auth: MagentoAuth) -> list[str]:
    """Every credential value, for redaction."""
    values = (auth.consumer_key, auth.consumer_secret, auth.access_token,
              auth.access_token_secret, auth.token)
    return [v.reveal() for v in values if v is not None and v.reveal()]


def _reveal(secret: Secret | None, name: str) -> str:
    if secret is None or not secret.reveal():
        raise ConfigError(f"magento.auth.{name}: is required")
    return secret.reveal()
