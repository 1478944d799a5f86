"""IAM authentication tokens for Aurora PostgreSQL, renewed before they expire.

A token from `generate_db_auth_token` is a presigned request valid for 15 minutes and is checked
only when a connection opens (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.IAMDBAuth.html).
Each new connection (including reconnects after a transient failure) asks for a token; a cached one
is reused only while it has at least `refresh_margin_s` of life left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

TOKEN_LIFETIME_S = 15 * 60


class IamTokenSource:
    """Hands out a valid token for one host/port/user, generating a fresh one when needed."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        region: str,
        *,
        rds_client: Any = None,
        refresh_margin_s: float = 5 * 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request = {"DBHostname": host, "Port": port, "DBUsername": user, "Region": region}
        self._client = rds_client
        self._margin = refresh_margin_s
        self._clock = clock
        self._token: str | None = None
        self._issued_at = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now - self._issued_at > TOKEN_LIFETIME_S - self._margin:
                if self._client is None:
                    import boto3

                    self._client = boto3.client("rds", region_name=self._request["Region"])
                self._token = self._client.generate_db_auth_token(**self._request)
                self._issued_at = now
            return self._token
