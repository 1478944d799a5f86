"""State in one DynamoDB table, for jobs on containers or Dask workers without a shared disk.

Items: partition key `pk` = job name, sort key `sk` = `lease`, `checkpoint#<partition>` or
`value#<key>` or `ledger#<table>#<digest>`; the payload is JSON text in `data`, so numbers and
nesting survive exactly. The
lease is a conditional put (`attribute_not_exists(pk) OR expires_at <= now`), the only way two
writers can race safely on DynamoDB. The table is created on demand with on-demand billing.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from etl import security
from etl.errors import ConnectionFailed, RuntimeFailure
from etl.records import Json
from etl.redact import RedactedRepr
from etl.state.base import Checkpoint, Lease, from_epoch, lease_held, lease_lost, new_lease, now, to_epoch
from etl.state.liveness import holder_is_dead, log_takeover

BATCH_WRITE_LIMIT = 25
"""Items per BatchWriteItem (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html)."""
_LEASE = "lease"
_CONDITION_FAILED = object()
"""What `_call` returns when a conditional write's condition did not hold."""
_CHECKPOINT = "checkpoint#"
_VALUE = "value#"
_LEDGER = "ledger#"
BATCH_GET_LIMIT = 100
"""Keys per BatchGetItem request (the service's limit)."""


def _ledger_prefix(table: str) -> str:
    return f"{_LEDGER}{table}#"


def _ledger_sort_key(table: str, key: str) -> str:
    """A digest, not the key text: sort keys are limited to 1,024 bytes, key texts are not."""
    return _ledger_prefix(table) + hashlib.sha256(key.encode()).hexdigest()


class Config(RedactedRepr, BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["dynamodb"]
    table: str = Field(default="etl_state", pattern=r"^[A-Za-z0-9_.\-]{3,255}$")
    """The state table, created (on-demand billing) if missing."""
    region: str | None = None
    """AWS region; default from the standard AWS configuration."""
    endpoint_url: str | None = None
    """Endpoint override (DynamoDB Local); default from the standard AWS configuration."""


def endpoints(config: Config) -> list[security.Endpoint]:
    """The DynamoDB endpoint the store talks to (etl/security.py decides whether that is allowed)."""
    return [security.aws_endpoint("DynamoDB", config.endpoint_url, config.region)]


class DynamoDbStateStore:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.table = config.table
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid = 0
        self._call("describe", self._ensure_table)

    # -- plumbing ------------------------------------------------------------------------------
    def _dynamodb(self) -> Any:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                import boto3

                self._client = boto3.session.Session().client(
                    "dynamodb", region_name=self.config.region, endpoint_url=self.config.endpoint_url
                )
                self._pid = os.getpid()
            return self._client

    def _call(self, what: str, action: Any, *args: Any, conditional: bool = False, **kwargs: Any) -> Any:
        """Run `action`, turning AWS errors into EtlErrors that name the table.

        `conditional`: a failed ConditionExpression returns `_CONDITION_FAILED` instead of raising.
        """
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        try:
            return action(*args, **kwargs)
        except (EndpointConnectionError, NoCredentialsError) as error:
            raise ConnectionFailed(f"state store (DynamoDB table {self.table}): {error}") from None
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            if code == "ConditionalCheckFailedException" and conditional:
                return _CONDITION_FAILED
            message = error.response.get("Error", {}).get("Message", "")
            raise RuntimeFailure(
                f"state store (DynamoDB table {self.table}): {what} failed: {code}: {message}"
            ) from None
        except BotoCoreError as error:
            raise RuntimeFailure(
                f"state store (DynamoDB table {self.table}): {what} failed: {error}"
            ) from None

    def _ensure_table(self) -> None:
        client = self._dynamodb()
        try:
            client.describe_table(TableName=self.table)
            return
        except client.exceptions.ResourceNotFoundException:
            pass
        try:
            client.create_table(
                TableName=self.table,
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except client.exceptions.ResourceInUseException:
            pass  # created by another process at the same moment
        client.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    def _key(self, job: str, sort_key: str) -> dict:
        return {"pk": {"S": job}, "sk": {"S": sort_key}}

    # -- leases --------------------------------------------------------------------------------
    def acquire_lease(self, job: str, holder: str, ttl_seconds: float) -> Lease:
        client = self._dynamodb()
        dead: dict[str, str] = {}  # the token and holder of a lease whose process is dead
        while True:
            lease = new_lease(job, holder, ttl_seconds)
            outcome = self._call(
                "acquiring the lease",
                client.put_item,
                conditional=True,
                TableName=self.table,
                Item={
                    **self._key(job, _LEASE),
                    "holder": {"S": holder},
                    "token": {"S": lease.token},
                    "expires_at": {"N": repr(to_epoch(lease.expires_at))},
                },
                ConditionExpression="attribute_not_exists(pk) OR #e <= :now OR #t = :dead",
                ExpressionAttributeNames={"#e": "expires_at", "#t": "token"},
                ExpressionAttributeValues={
                    ":now": {"N": repr(to_epoch(now()))}, ":dead": {"S": dead.get("token", "")},
                },
            )
            if outcome is not _CONDITION_FAILED:
                if dead:
                    log_takeover(job, dead["holder"])
                return lease
            current = self._get(job, _LEASE)
            if current is None:  # released in between: try again
                continue
            held = {"holder": current["holder"]["S"], "token": current["token"]["S"]}
            if held["token"] == dead.get("token") or not holder_is_dead(held["holder"]):
                raise lease_held(job, held["holder"], from_epoch(float(current["expires_at"]["N"])))
            dead = held  # take it over on the next try, only if it is still that lease

    def renew_lease(self, lease: Lease, ttl_seconds: float) -> Lease:
        expires_at = new_lease(lease.job, lease.holder, ttl_seconds).expires_at
        outcome = self._call(
            "renewing the lease",
            self._dynamodb().update_item,
            conditional=True,
            TableName=self.table,
            Key=self._key(lease.job, _LEASE),
            UpdateExpression="SET #e = :e",
            ConditionExpression="#t = :t",
            ExpressionAttributeNames={"#e": "expires_at", "#t": "token"},
            ExpressionAttributeValues={":e": {"N": repr(to_epoch(expires_at))}, ":t": {"S": lease.token}},
        )
        if outcome is _CONDITION_FAILED:
            raise lease_lost(lease)
        return Lease(lease.job, lease.holder, expires_at, lease.token)

    def release_lease(self, lease: Lease) -> None:
        """A failed condition means the lease is someone else's now: nothing to release."""
        self._call(
            "releasing the lease",
            self._dynamodb().delete_item,
            conditional=True,
            TableName=self.table,
            Key=self._key(lease.job, _LEASE),
            ConditionExpression="#t = :t",
            ExpressionAttributeNames={"#t": "token"},
            ExpressionAttributeValues={":t": {"S": lease.token}},
        )

    # -- checkpoints and values ----------------------------------------------------------------
    def checkpoints(self, job: str) -> dict[str, Checkpoint]:
        found = (Checkpoint.from_json(item["data"]["S"]) for item in self._query(job, _CHECKPOINT))
        return {checkpoint.partition: checkpoint for checkpoint in found}

    def save_checkpoint(self, job: str, checkpoint: Checkpoint) -> None:
        self._put(job, _CHECKPOINT + checkpoint.partition, checkpoint.to_json())

    def clear(self, job: str) -> None:
        keys = [
            self._key(job, item["sk"]["S"])
            for prefix in (_CHECKPOINT, _VALUE, _LEDGER)
            for item in self._query(job, prefix)
        ]
        self._write_all(job, [{"DeleteRequest": {"Key": key}} for key in keys])

    def _write_all(self, job: str, requests: list[dict]) -> None:
        """BatchWriteItem in chunks, retrying what comes back unprocessed."""
        client = self._dynamodb()
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            pending = {self.table: requests[start : start + BATCH_WRITE_LIMIT]}
            attempt = 0
            while pending:
                response = self._call("writing state", client.batch_write_item, RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if pending:
                    attempt = self._pause(attempt, f"writing the state of job '{job}'")

    def _pause(self, attempt: int, what: str) -> int:
        """Back off before retrying what the service left unprocessed; give up after 10 tries."""
        attempt += 1
        if attempt > 10:
            raise RuntimeFailure(f"state store (DynamoDB table {self.table}): {what} was throttled 10 times; "
                                 "try again")
        time.sleep(min(2.0, 0.05 * 2**attempt))
        return attempt

    # -- the ledger: sort key `ledger#<table>#<digest of the key text>`, the key text in `k` ---------
    def ledger_get(self, job: str, table: str, keys: Sequence[str]) -> dict[str, Json]:
        client = self._dynamodb()
        wanted = [self._key(job, _ledger_sort_key(table, key)) for key in dict.fromkeys(keys)]
        found: dict[str, Json] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            pending = {self.table: {"Keys": wanted[start:start + BATCH_GET_LIMIT], "ConsistentRead": True}}
            attempt = 0
            while pending:
                response = self._call("reading state", client.batch_get_item, RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table, []):
                    found[item["k"]["S"]] = json.loads(item["data"]["S"])
                pending = response.get("UnprocessedKeys") or {}
                if pending:
                    attempt = self._pause(attempt, f"reading the ledger of job '{job}'")
        return found

    def ledger_put(self, job: str, table: str, entries: Mapping[str, Json | None]) -> None:
        requests = []
        for key, value in entries.items():
            item_key = self._key(job, _ledger_sort_key(table, key))
            if value is None:
                requests.append({"DeleteRequest": {"Key": item_key}})
            else:
                item = {**item_key, "k": {"S": key}, "data": {"S": json.dumps(value)}}
                requests.append({"PutRequest": {"Item": item}})
        self._write_all(job, requests)

    def ledger_page(self, job: str, table: str, after: str | None, limit: int
                    ) -> tuple[list[tuple[str, Json]], str | None]:
        arguments: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "pk = :job AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":job": {"S": job}, ":prefix": {"S": _ledger_prefix(table)}},
            "ConsistentRead": True, "Limit": limit,
        }
        if after is not None:
            arguments["ExclusiveStartKey"] = json.loads(after)
        response = self._call("reading state", self._dynamodb().query, **arguments)
        page = [(item["k"]["S"], json.loads(item["data"]["S"])) for item in response["Items"]]
        last = response.get("LastEvaluatedKey")
        return page, (json.dumps(last) if last else None)

    def ledger_clear(self, job: str, table: str) -> None:
        keys = [self._key(job, item["sk"]["S"]) for item in self._query(job, _ledger_prefix(table))]
        self._write_all(job, [{"DeleteRequest": {"Key": key}} for key in keys])

    def get_value(self, job: str, key: str) -> Json | None:
        item = self._get(job, _VALUE + key)
        return None if item is None else json.loads(item["data"]["S"])

    def set_value(self, job: str, key: str, value: Json) -> None:
        self._put(job, _VALUE + key, json.dumps(value))

    def _put(self, job: str, sort_key: str, data: str) -> None:
        self._call(
            "saving state",
            self._dynamodb().put_item,
            TableName=self.table,
            Item={**self._key(job, sort_key), "data": {"S": data}},
        )

    def _get(self, job: str, sort_key: str) -> dict | None:
        response = self._call(
            "reading state",
            self._dynamodb().get_item,
            TableName=self.table,
            Key=self._key(job, sort_key),
            ConsistentRead=True,
        )
        return response.get("Item")

    def _query(self, job: str, prefix: str) -> list[dict]:
        paginator = self._dynamodb().get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :job AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":job": {"S": job}, ":prefix": {"S": prefix}},
            ConsistentRead=True,
        )
        return self._call("reading state", lambda: [item for page in pages for item in page["Items"]])

    def close(self) -> None:
        with self._lock:
            self._client = None


def open_store(config: Config, *, base_dir: Path) -> DynamoDbStateStore:
    """`base_dir` is unused: the store lives in the DynamoDB table."""
    return DynamoDbStateStore(config)
