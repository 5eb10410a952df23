"""Who is calling, and as which grid account.

Simple authentication, as HDFS without Kerberos: the ``user.name`` parameter names the
caller and is trusted (``dr.who``-style anonymous calls act as the account ``default``).
The account is the user name itself, unless ``[webhdfs] accounts`` in grid.toml maps it
(``{root = "default"}``, ``{"etl@EXAMPLE.COM" = "etl"}``); the account must be a valid grid
account name (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit). ``doas`` (a proxy
user) is refused in this mode.

With ``--require-secret``, every call must carry ``delegation=TOKEN``: either the
namespace secret itself (then ``user.name`` and ``doas`` choose the account), or a token
minted for one account (``grid webhdfs token USER`` or GETDELEGATIONTOKEN), an HMAC of
the account and an expiry under the namespace secret: ``gwt1.ACCOUNT.EXPIRY.SIGNATURE``.
A token is bound to its account; a ``user.name`` beside it must name the same one.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gridfs.common.config import DEFAULT_ACCOUNT
from gridfs.common.errors import InvalidName
from gridfs.common.names import check_account
from gridfs.gateways.webhdfs.errors import WebHdfsError, bad_argument

TOKEN_PREFIX = "gwt1."
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@$-]{0,127}\Z")  # Hadoop user names, Kerberos-style ones too
DEFAULT_TOKEN_TTL = 24 * 3600


@dataclass(frozen=True)
class Caller:
    user: str  # reported as the owner of what carries no owner of its own
    account: str


def denied(message: str) -> WebHdfsError:
    return WebHdfsError("AccessControlException", message)


class Authenticator:
    def __init__(self, secret: str, require_secret: bool, accounts: Mapping[str, str] | None = None) -> None:
        self.secret = secret
        self.require_secret = require_secret
        self.accounts = dict(accounts or {})

    def caller(self, query: Mapping[str, str]) -> Caller:
        user = query.get("user.name", "")
        proxy = query.get("doas", "")
        token = query.get("delegation", "")
        if not self.require_secret:
            if proxy:
                raise denied("doas (proxy users) needs the gateway to run with --require-secret")
            return self._as(user or DEFAULT_ACCOUNT)
        if not token:
            raise denied("this gateway requires delegation=TOKEN (the namespace secret or a token) on every call")
        if hmac.compare_digest(token.encode(), self.secret.encode()):
            return self._as(proxy or user or DEFAULT_ACCOUNT)
        account = self.verify(token)
        if (user and self._account_of(user) != account) or (proxy and self._account_of(proxy) != account):
            raise denied(f"the token is for the account {account!r}, not for {proxy or user!r}")
        return Caller(user or account, account)

    def _as(self, user: str) -> Caller:
        return Caller(user, self._account_of(user))

    def _account_of(self, user: str) -> str:
        if not USER_RE.match(user):
            raise bad_argument(f"Invalid value for webhdfs parameter \"user.name\": {user!r}")
        try:
            return check_account(self.accounts.get(user, user))
        except InvalidName as exc:
            raise bad_argument(f"Invalid value for webhdfs parameter \"user.name\": {exc}") from exc

    def _signature(self, account: str, expiry: int) -> str:
        message = f"webhdfs-token:{account}:{expiry}".encode()
        return hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()[:40]

    def mint(self, account: str, ttl: float = DEFAULT_TOKEN_TTL) -> str:
        check_account(account)
        expiry = int(time.time() + ttl)
        return f"{TOKEN_PREFIX}{account}.{expiry}.{self._signature(account, expiry)}"

    def verify(self, token: str) -> str:
        """The account a token was minted for; raises AccessControlException."""
        if not token.startswith(TOKEN_PREFIX) or token.count(".") < 3:
            raise denied("invalid delegation token")
        account, expiry, signature = token[len(TOKEN_PREFIX):].rsplit(".", 2)
        if not expiry.isdigit() or not hmac.compare_digest(signature, self._signature(account, int(expiry))):
            raise denied("invalid delegation token")
        if int(expiry) < time.time():
            raise denied("the delegation token has expired")
        return account
