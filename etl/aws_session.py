"""Fresh AWS sessions that share one loader of botocore's service models per process.

A new session reads the AWS configuration and credentials afresh (each sink, each job load), but
loading DynamoDB's models and the endpoint rules again for every one costs tens of milliseconds of
CPU: every partition opens its own sink, and every job load resolves its endpoints.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import botocore.session

_loader: Any = None
_loader_lock = threading.Lock()


def boto3_session(region: str | None) -> boto3.session.Session:
    """A boto3 session over a new botocore session that shares the process's model loader."""
    global _loader
    session = botocore.session.Session()
    with _loader_lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
        session.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=session, region_name=region)
