"""DynamoDB sink: BatchWriteItem in parallel, every item accounted for (written or rejected with a reason).

Hand-rolled loaders lose items in two known ways: boto3's batch writer drops its buffer when a call
raises, and UnprocessedItems get ignored. Here each chunk of at most 25 items is owned by one
thread until every item in it is either confirmed written or returned as a reject, with bounded
retries (exponential backoff, full jitter) in between.
Limits (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html):
at most 25 put/delete requests and 16 MB per BatchWriteItem call; items up to 400 KB.
"""

from __future__ import annotations

import decimal
import functools
import ipaddress
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from etl import security
from etl.coltypes import ColumnType
from etl.errors import ConnectionFailed, EtlError, RuntimeFailure
from etl.records import Reject, TableRows, TableSpec
from etl.redact import RedactedRepr, redact
from etl.settings_types import Integer
from etl.sinks.base import CheckResult, NameLimits, TargetRules, WriteResult, column_form
from etl.sinks.dynamodb_scan import install_scan
from etl.sinks.dynamodb_scope import Scope
from etl.sinks.dynamodb_values import (
    MAX_ITEM_BYTES,
    STORED_FORM_TYPES,
    AttributeValue,
    ItemRejected,
    attribute_type,
    decode_item,
    encode_item,
    encode_item_sized,
    encode_value,
    stored_value,
)
from etl.sinks.dynamodb_wire import batch_write, install, json_item
from etl.sinks.retry import Backoff

MAX_BATCH_ITEMS = 25
MAX_BATCH_BYTES = 16 * 1024 * 1024
RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
}
KEY_ATTRIBUTE_TYPES = {
    "string": "S", "date": "S", "time": "S", "timestamp": "S", "timestamptz": "S", "uuid": "S",
    "int": "N", "decimal": "N", "float": "N", "bytes": "B",
}


class Gsi(BaseModel):
    """A global secondary index to create with a table."""

    model_config = ConfigDict(extra="forbid")
    name: str
    partition_key: str
    sort_key: str | None = None
    projection: Literal["ALL", "KEYS_ONLY", "INCLUDE"] = "ALL"
    non_key_attributes: list[str] = Field(default_factory=list)


NAME_LIMITS = NameLimits("DynamoDB")
RULES = TargetRules(
    "DynamoDB", NAME_LIMITS, child_tables=False, key_required=True, shared_tables=True, key_columns=2,
    key_types=frozenset({"string", "int", "decimal", "float", "bytes"}), key_bytes=(2048, 1024),
    omits_nulls=True, conditional_writes=True, dms_items=True,
)
"""Keys are [partition key] or [partition key, sort key] of S, N or B attributes, partition key values
up to 2048 bytes and sort key values up to 1024 bytes:
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.CoreComponents.html,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-partition-sort-keys"""
"""DynamoDB keeps attribute names whole (item size bounds them), so no two names become one."""


class Config(RedactedRepr, BaseModel):
    """The `dynamodb` target section of a job file."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["dynamodb"]
    endpoint_url: str | None = None
    """None for AWS itself; http:// is accepted only for a loopback endpoint (DynamoDB Local)."""
    region: str = "us-east-1"
    create: Literal["never", "if_missing"] = "never"
    billing: Literal["on_demand"] = "on_demand"
    gsis: dict[str, list[Gsi]] = Field(default_factory=dict)
    """GSIs to create, per table name."""
    scopes: dict[str, Scope] = Field(default_factory=dict)
    """Per table shared with other jobs: the items this job owns, the only ones validation reads back
    (etl/sinks/dynamodb_scope.py)."""
    concurrency: Integer = Field(4, ge=1, le=64)
    """Writer threads."""
    insert_only: bool = False
    """Conditional writes: never overwrite an existing item that differs (it becomes a reject)."""
    max_attempts: Integer = Field(8, ge=1, le=50)
    base_delay_ms: float = Field(50.0, ge=0)
    max_delay_ms: float = Field(20_000.0, ge=0)

    @field_validator("endpoint_url")
    @classmethod
    def _tls_unless_loopback(cls, url: str | None) -> str | None:
        if url is None:
            return url
        parts = urlsplit(url)
        if parts.scheme == "https":
            return url
        if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
            return url
        shown = redact(repr(url))
        raise ValueError(f"endpoint_url {shown} must use https (plain http only for a loopback endpoint)")


def endpoints(config: Config) -> list[security.Endpoint]:
    """The DynamoDB endpoint (etl/security.py decides whether that is allowed)."""
    return [security.aws_endpoint("DynamoDB", config.endpoint_url, config.region)]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Entry:
    """One item on its way to DynamoDB, with what is needed to reject it."""

    key_id: tuple
    item: dict[str, AttributeValue]
    row: dict
    source_key: str
    size: int
    """Bytes by DynamoDB's item size rules."""
    wire: str = ""
    """The item as BatchWriteItem's JSON carries it (`json_item`); empty for conditional writes."""
    values: dict[str, AttributeValue] | None = None
    """The values of the table's condition placeholders (`:v`) for this item."""


@dataclass
class _Table:
    spec: TableSpec
    columns: dict[str, ColumnType]


def _key_id(item: dict[str, AttributeValue], key: tuple[str, ...]) -> tuple:
    """Identity of an item's key as DynamoDB sees it (numbers 1 and 1.0 are the same key)."""
    parts = []
    for name in key:
        kind, value = next(iter(item[name].items()))
        parts.append((kind, Decimal(value).normalize(_EXACT) if kind == "N" else value))
    return tuple(parts)


_EXACT = decimal.Context(prec=80)
"""Wide enough that normalizing any number DynamoDB accepts (38 digits) never rounds."""


def _key_part(value: Any, column: ColumnType | None, name: str) -> tuple:
    """A key value as DynamoDB will compare it, without encoding the whole row. Python numbers already
    compare by value (1 == Decimal("1.0")); a float is taken as the decimal text it will be sent as."""
    kind = type(value)
    if kind is str and value:
        return ("S", value)
    if (kind is int or kind is Decimal) and value == value:  # NaN is never a key
        return ("N", value)
    if kind is float:
        return ("N", Decimal(repr(value)))
    if value is None or value == "" or value == b"":
        raise KeyError(name)
    encoded = encode_value(value, column, name)
    if next(iter(encoded)) not in ("S", "N", "B"):
        raise KeyError(name)  # not a key type: left alone, so encoding rejects it
    return _key_id({name: encoded}, (name,))[0]


def _latest_by_key(table: _Table, rows: TableRows) -> list[tuple[dict, str]]:
    """(row, source key) pairs with one row per key, the later row winning. A row whose key does not
    encode is kept as it is, so that encoding rejects it with the reason."""
    latest: dict[Any, tuple[dict, str]] = {}
    key = table.spec.key
    source_keys = rows.source_keys
    for index, row in enumerate(rows.rows):
        source_key = source_keys[index] if index < len(source_keys) else ""
        try:
            identity: Any = tuple(_key_part(row[name], table.columns.get(name), name) for name in key)
            hash(identity)
        except (ItemRejected, KeyError, TypeError, ArithmeticError):
            identity = index  # unique: never merged with another row
        latest.pop(identity, None)
        latest[identity] = (row, source_key)
    return list(latest.values())


class DynamoDBSink:
    """See the module docstring. Thread-safe: `write` may be called from several threads."""

    replaces_children = False
    """Items made from array elements are items like any other: nothing links them to their parent."""

    def __init__(self, name: str, config: Config, *, client: Any = None, backoff: Backoff | None = None):
        self.name = name
        self.config = config
        self._client = client if client is not None else _make_client(config)
        install(self._client)
        install_scan(self._client)
        self._backoff = backoff or Backoff(config.max_attempts, config.base_delay_ms, config.max_delay_ms)
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix=f"dynamodb-{name}")
        self._tables: dict[str, _Table] = {}

    # ------------------------------------------------------------ tables

    def prepare(self, tables: Sequence[TableSpec], *, empty_at_start: frozenset[str] = frozenset()
                ) -> frozenset[str]:
        """Create or check every table; DynamoDB has no child tables, so none is reported empty."""
        for spec in tables:
            columns = self._register(spec).columns
            existing = self._describe(spec.table)
            if existing is None:
                if self.config.create != "if_missing":
                    raise EtlError(
                        f"DynamoDB table {spec.table!r} does not exist (target {self.name!r})",
                        hint="create it, or set `create: if_missing` on the target",
                    )
                existing = self._create(spec, columns)
            if existing is not None:
                self._check_key_schema(spec, columns, existing)
        return frozenset()

    def _register(self, spec: TableSpec) -> _Table:
        table = _Table(spec, {column.name: column.parsed_type for column in spec.columns})
        self._tables[spec.table] = table
        return table

    def check(self, tables: Sequence[TableSpec], batch: Mapping[str, TableRows]) -> CheckResult:
        """Encode every item as `write` does (keys, numbers, the 400 KB item size) and send nothing."""
        result = CheckResult()
        for spec in tables:
            if spec.table in batch:
                table = self._register(spec)
                entries, rejects = self._encoded(table, _latest_by_key(table, batch[spec.table]))
                result.rejects.extend(rejects)
                largest = max((entry.size for entry in entries), default=0)
                result.sizes[spec.table] = {"item bytes": (largest, MAX_ITEM_BYTES)}
        return result

    def _describe(self, table: str) -> dict | None:
        try:
            return self._client.describe_table(TableName=table)["Table"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise _connection_failed(self.name, error) from None
        except BotoCoreError as error:
            raise _connection_failed(self.name, error) from None

    def _key_schema(self, spec: TableSpec) -> list[dict]:
        if not 1 <= len(spec.key) <= 2:
            raise EtlError(
                f"DynamoDB table {spec.table!r}: key must be (partition key) or (partition key, sort key),"
                f" got {list(spec.key)}"
            )
        roles = ("HASH", "RANGE")
        return [{"AttributeName": name, "KeyType": role} for name, role in zip(spec.key, roles, strict=False)]

    def _attribute_type(self, spec: TableSpec, columns: dict[str, ColumnType], name: str) -> str:
        column = columns.get(name)
        kind = KEY_ATTRIBUTE_TYPES.get(column.base) if column else None
        if kind is None:
            raise EtlError(
                f"DynamoDB table {spec.table!r}: key attribute {name!r} must be a column of a string, number"
                " or bytes type",
                hint="declare the column in the mapping with one of: " + ", ".join(KEY_ATTRIBUTE_TYPES),
            )
        return kind

    def _create(self, spec: TableSpec, columns: dict[str, ColumnType]) -> dict | None:
        """Create the table and wait until it is ACTIVE. None when this call created it; when another
        shard or worker created it first (ResourceInUseException), that table once ACTIVE, for the
        caller to check like any existing table."""
        key_schema = self._key_schema(spec)
        attributes = {name: self._attribute_type(spec, columns, name) for name in spec.key}
        request: dict[str, Any] = {
            "TableName": spec.table,
            "KeySchema": key_schema,
            "BillingMode": "PAY_PER_REQUEST",
        }
        indexes = []
        for gsi in self.config.gsis.get(spec.table, []):
            schema = [{"AttributeName": gsi.partition_key, "KeyType": "HASH"}]
            if gsi.sort_key:
                schema.append({"AttributeName": gsi.sort_key, "KeyType": "RANGE"})
            for element in schema:
                name = element["AttributeName"]
                attributes[name] = self._attribute_type(spec, columns, name)
            projection: dict[str, Any] = {"ProjectionType": gsi.projection}
            if gsi.projection == "INCLUDE":
                projection["NonKeyAttributes"] = gsi.non_key_attributes
            indexes.append({"IndexName": gsi.name, "KeySchema": schema, "Projection": projection})
        request["AttributeDefinitions"] = [
            {"AttributeName": name, "AttributeType": kind} for name, kind in attributes.items()
        ]
        if indexes:
            request["GlobalSecondaryIndexes"] = indexes
        created = True
        try:
            self._client.create_table(**request)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceInUseException":
                raise _connection_failed(self.name, error) from None
            created = False  # created (or being created) meanwhile by another shard or worker
        except BotoCoreError as error:
            raise _connection_failed(self.name, error) from None
        self._wait_active(spec.table)
        if created:
            return None
        existing = self._describe(spec.table)
        if existing is None:
            raise EtlError(f"DynamoDB table {spec.table!r} was deleted while it was being prepared"
                           f" (target {self.name!r})", hint="run the job again")
        return existing

    def _wait_active(self, table: str) -> None:
        try:
            self._client.get_waiter("table_exists").wait(
                TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
        except WaiterError as error:
            raise EtlError(f"DynamoDB table {table!r} did not become ACTIVE within 120 s"
                           f" (target {self.name!r}): {error}") from None
        except (ClientError, BotoCoreError) as error:
            raise _connection_failed(self.name, error) from None

    def _check_key_schema(self, spec: TableSpec, columns: dict[str, ColumnType], existing: dict) -> None:
        wanted = self._key_schema(spec)
        types = {a["AttributeName"]: a["AttributeType"] for a in existing.get("AttributeDefinitions", [])}
        if existing["KeySchema"] != wanted:
            have = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in existing["KeySchema"])
            raise EtlError(
                f"DynamoDB table {spec.table!r} exists with key {have}; the mapping's key is"
                f" {', '.join(spec.key)}",
                hint="point the mapping at another table, or change its key to match",
            )
        for name in spec.key:
            kind = self._attribute_type(spec, columns, name)
            if types.get(name) != kind:
                raise EtlError(
                    f"DynamoDB table {spec.table!r}: key attribute {name!r} has type {types.get(name)},"
                    f" the mapping's column needs {kind}",
                    hint="change the column type in the mapping, or use another table",
                )

    def _table(self, name: str) -> _Table:
        try:
            return self._tables[name]
        except KeyError:
            raise EtlError(f"table {name!r} was not prepared on DynamoDB target {self.name!r}") from None

    # ------------------------------------------------------------ writing

    def write(self, batch: Mapping[str, TableRows]) -> WriteResult:
        """De-duplicate by key here; encode, check and write in the writer threads, 25 rows per task,
        so encoding one chunk overlaps with other chunks' requests in flight."""
        result = WriteResult()
        tasks: list[tuple[str, list[tuple[dict, str]]]] = []
        for table_name, rows in batch.items():
            table = self._table(table_name)
            result.loaded.setdefault(table_name, 0)
            latest = _latest_by_key(table, rows)
            tasks.extend((table_name, latest[start:start + MAX_BATCH_ITEMS])
                         for start in range(0, len(latest), MAX_BATCH_ITEMS))
        futures = [self._pool.submit(self._encode_and_write, table_name, part) for table_name, part in tasks]
        for (table_name, _), future in zip(tasks, futures, strict=True):
            written, rejects = future.result()
            result.loaded[table_name] += written
            result.rejects.extend(rejects)
        return result

    def _encode_and_write(self, table_name: str, rows: list[tuple[dict, str]]) -> tuple[int, list[Reject]]:
        entries, rejects = self._encoded(self._tables[table_name], rows)
        batched = not self.config.insert_only and self._tables[table_name].spec.condition is None
        write_chunk = self._write_chunk if batched else self._put_each_if_new
        written = 0
        for chunk in _chunks(entries):
            chunk_written, chunk_rejects = write_chunk(table_name, chunk)
            written += chunk_written
            rejects.extend(chunk_rejects)
        return written, rejects

    def _encoded(self, table: _Table, rows: list[tuple[dict, str]]) -> tuple[list[_Entry], list[Reject]]:
        """Each row as the item it becomes, or the reject of a row DynamoDB could not store."""
        rejects: list[Reject] = []
        entries = []
        condition = table.spec.condition
        batched = not self.config.insert_only and condition is None
        for row, source_key in rows:
            try:
                values = None
                attributes = row
                if condition is not None:  # the placeholders' values ride in the row; they are no attributes
                    attributes = {name: value for name, value in row.items() if name not in condition.values}
                    values = {name: encode_value(row.get(name), None, name) for name in condition.values}
                item, size = encode_item_sized(attributes, table.columns, table.spec.key)
            except ItemRejected as problem:
                rejects.append(_reject(table.spec, source_key, row, problem.reason, problem.field_path,
                                       problem.value_type))
                continue
            entries.append(_Entry(_key_id(item, table.spec.key), item, row, source_key, size,
                                  json_item(item) if batched else "", values))
        return entries, rejects

    def _write_chunk(self, table_name: str, entries: list[_Entry]) -> tuple[int, list[Reject]]:
        """Write one chunk until every item is written or rejected; returns (written, rejects)."""
        spec = self._tables[table_name].spec
        pending = {entry.key_id: entry for entry in entries}
        written = 0
        attempt = 1
        while True:
            try:
                response = batch_write(self._client, table_name, [entry.wire for entry in pending.values()])
            except ClientError as error:
                code = error.response["Error"]["Code"]
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code not in RETRYABLE_CODES and status < 500:
                    return self._refused(table_name, list(pending.values()), error, written)
                reason = f"{code} on every attempt"
            except BotoCoreError as error:
                reason = f"{type(error).__name__} on every attempt"
            else:
                unprocessed = response.get("UnprocessedItems", {}).get(table_name, [])
                still = {_key_id(request["PutRequest"]["Item"], spec.key) for request in unprocessed}
                written += len(pending) - len(still)
                pending = {key_id: pending[key_id] for key_id in still}
                if not pending:
                    return written, []
                reason = "returned as UnprocessedItems on every attempt"
            if not self._backoff.can_retry(attempt):
                reason = f"not written after {attempt} attempts: {reason}"
                return written, [_reject(spec, e.source_key, e.row, reason) for e in pending.values()]
            self._backoff.pause(attempt)
            attempt += 1

    def _refused(
        self, table_name: str, entries: list[_Entry], error: ClientError, written: int
    ) -> tuple[int, list[Reject]]:
        """DynamoDB refused the whole call: split it until the refused items are alone, reject only those."""
        code = error.response["Error"]["Code"]
        if code not in ("ValidationException", "ItemCollectionSizeLimitExceededException"):
            raise RuntimeFailure(
                f"DynamoDB target {self.name!r}, table {table_name!r}: {code}:"
                f" {error.response['Error'].get('Message', '')}",
                hint="check the table exists and the credentials may write to it",
            )
        if len(entries) == 1:
            entry = entries[0]
            reason = f"DynamoDB refused the item: {code}: {error.response['Error'].get('Message', '')[:200]}"
            return written, [_reject(self._tables[table_name].spec, entry.source_key, entry.row, reason)]
        middle = len(entries) // 2
        rejects: list[Reject] = []
        for half in (entries[:middle], entries[middle:]):
            half_written, half_rejects = self._write_chunk(table_name, half)
            written += half_written
            rejects.extend(half_rejects)
        return written, rejects

    def _put_each_if_new(self, table_name: str, entries: list[_Entry]) -> tuple[int, list[Reject]]:
        """Conditional writes, one PutItem each: insert_only (attribute_not_exists) and the table's
        condition-expression. A write the condition refuses counts as written when the item there is
        the one being written (a replayed batch); otherwise it is rejected, never dropped."""
        spec = self._tables[table_name].spec
        conditions, names = [], {}
        if self.config.insert_only:
            conditions.append("attribute_not_exists(#etl_key)")
            names["#etl_key"] = spec.key[0]
        if spec.condition is not None:
            conditions.append(f"({spec.condition.expression})")
            names.update(spec.condition.names)
        refusal = ("an item with this key already exists and differs (insert_only)" if spec.condition is None
                   else f"the table's condition-expression `{spec.condition.expression}` refused the write"
                   " and the item there differs")
        written, rejects = 0, []
        for entry in entries:
            attempt = 1
            while True:
                try:
                    self._client.put_item(
                        TableName=table_name,
                        Item=entry.item,
                        ConditionExpression=" AND ".join(conditions),
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                        **({"ExpressionAttributeNames": names} if names else {}),
                        **({"ExpressionAttributeValues": entry.values} if entry.values else {}),
                    )
                    written += 1
                    break
                except ClientError as error:
                    code = error.response["Error"]["Code"]
                    if code == "ConditionalCheckFailedException":
                        old = error.response.get("Item", {})
                        if decode_item(old, {}) == decode_item(entry.item, {}):
                            written += 1
                        else:
                            rejects.append(_reject(spec, entry.source_key, entry.row, refusal))
                        break
                    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                    if code not in RETRYABLE_CODES and status < 500:
                        more_written, more_rejects = self._refused(table_name, [entry], error, 0)
                        written += more_written
                        rejects.extend(more_rejects)
                        break
                    reason = code
                except BotoCoreError as error:
                    reason = type(error).__name__
                if not self._backoff.can_retry(attempt):
                    rejects.append(_reject(spec, entry.source_key, entry.row,
                                           f"not written after {attempt} attempts: {reason} every time"))
                    break
                self._backoff.pause(attempt)
                attempt += 1
        return written, rejects

    def delete(self, table: TableSpec, keys: Sequence[dict]) -> int:
        """Delete by key with the same chunking and retries as writes; returns the deletes applied."""
        columns = self._table(table.table).columns
        requests: dict[tuple, dict] = {}
        for key in keys:
            item = encode_item({name: key[name] for name in table.key}, columns, table.key)
            requests[_key_id(item, table.key)] = item
        deleted = 0
        pending = list(requests.items())
        for start in range(0, len(pending), MAX_BATCH_ITEMS):
            chunk = dict(pending[start:start + MAX_BATCH_ITEMS])
            attempt = 1
            while chunk:
                try:
                    response = self._client.batch_write_item(RequestItems={
                        table.table: [{"DeleteRequest": {"Key": item}} for item in chunk.values()]
                    })
                except (ClientError, BotoCoreError) as error:
                    code = error.response["Error"]["Code"] if isinstance(error, ClientError) else ""
                    if isinstance(error, ClientError) and code not in RETRYABLE_CODES:
                        message = f"DynamoDB target {self.name!r}, table {table.table!r}: {code}"
                        raise RuntimeFailure(message) from None
                else:
                    left = response.get("UnprocessedItems", {}).get(table.table, [])
                    still = {_key_id(r["DeleteRequest"]["Key"], table.key) for r in left}
                    deleted += len(chunk) - len(still)
                    chunk = {key_id: chunk[key_id] for key_id in still}
                    if not chunk:
                        break
                if not self._backoff.can_retry(attempt):
                    raise RuntimeFailure(
                        f"DynamoDB target {self.name!r}, table {table.table!r}: {len(chunk)} deletes not"
                        f" applied after {attempt} attempts"
                    )
                self._backoff.pause(attempt)
                attempt += 1
        return deleted

    # ------------------------------------------------------------ reading

    def read_back(self, table: TableSpec, *, segments: int = 4, consistent: bool = False) -> Iterator[dict]:
        """Parallel Scan (one thread per segment), pages handed over through a small bounded queue."""
        columns = {column.name: column.parsed_type for column in table.columns}
        pages: queue.Queue = queue.Queue(maxsize=segments * 2)
        stop = threading.Event()
        done = object()
        scope = self.config.scopes.get(table.table)

        def scan(segment: int) -> None:
            try:
                start: dict | None = None
                while not stop.is_set():
                    request: dict[str, Any] = {
                        "TableName": table.table, "Segment": segment, "TotalSegments": segments,
                        "ConsistentRead": consistent,
                    }
                    if start:
                        request["ExclusiveStartKey"] = start
                    if scope is not None:
                        request.update(scope.scan_filter())
                    response = self._scan_page(request)
                    _put(pages, response.get("Items", []), stop)
                    start = response.get("LastEvaluatedKey")
                    if not start:
                        break
            except BaseException as error:  # handed to the reader, which re-raises it
                _put(pages, error, stop)
            finally:
                _put(pages, done, stop)

        threads = [threading.Thread(target=scan, args=(s,), daemon=True) for s in range(segments)]
        for thread in threads:
            thread.start()
        finished = 0
        try:
            while finished < segments:
                page = pages.get()
                if page is done:
                    finished += 1
                elif isinstance(page, BaseException):
                    raise page
                else:
                    for item in page:
                        yield decode_item(item, columns)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)

    def stored_form(self, table: TableSpec) -> Callable[[dict], dict] | None:
        """The row as `read_back` returns it once written (`Sink.stored_form`): values of json, list and
        set columns through the writer's encoding and the reader's decoding (`stored_value`), so values
        inside maps and lists are what DynamoDB holds (datetimes, dates and UUIDs as text). Scalar
        columns are decoded by their type and read back as written."""
        return column_form({
            column.name: functools.partial(stored_value, column=column.parsed_type)
            for column in table.columns if column.parsed_type.base in STORED_FORM_TYPES
        }, ItemRejected)

    def _scan_page(self, request: dict) -> dict:
        attempt = 1
        while True:
            try:
                return self._client.scan(**request)
            except ClientError as error:
                code = error.response["Error"]["Code"]
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code not in RETRYABLE_CODES and status < 500:
                    raise _connection_failed(self.name, error) from None
            except BotoCoreError as error:
                if not self._backoff.can_retry(attempt):
                    raise _connection_failed(self.name, error) from None
            if not self._backoff.can_retry(attempt):
                raise RuntimeFailure(f"DynamoDB target {self.name!r}: Scan of {request['TableName']!r} failed"
                                     f" after {attempt} attempts")
            self._backoff.pause(attempt)
            attempt += 1

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _put(pages: queue.Queue, value: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            pages.put(value, timeout=0.2)
            return
        except queue.Full:
            continue


def _chunks(entries: list[_Entry]) -> Iterator[list[_Entry]]:
    """At most 25 items and 16 MB per BatchWriteItem call."""
    chunk: list[_Entry] = []
    size = 0
    for entry in entries:
        if chunk and (len(chunk) == MAX_BATCH_ITEMS or size + entry.size > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry.size
    if chunk:
        yield chunk


def _reject(
    spec: TableSpec, source_key: str, row: dict, reason: str, field_path: str | None = None,
    value_type: str | None = None,
) -> Reject:
    return Reject(
        table=spec.table, source_key=source_key, reason=reason, stage="load", field_path=field_path or None,
        value_type=value_type, record=row, target=f"{spec.target}.{spec.table}",
    )


def _connection_failed(name: str, error: Exception) -> ConnectionFailed:
    return ConnectionFailed(
        f"DynamoDB target {name!r}: {type(error).__name__}: {error}",
        hint="check endpoint_url, region and the AWS credentials (environment, profile or role)",
    )


def _make_client(config: Config) -> Any:
    """A low-level client from the standard AWS credential chain; DynamoDB Local accepts any credentials,
    so a loopback endpoint without configured credentials gets placeholder ones."""
    # boto3 and botocore's client machinery only when a sink is opened: a job load or --plan needs neither
    import botocore.config

    from etl.aws_session import boto3_session

    session = boto3_session(config.region)
    credentials: dict[str, str] = {}
    local = config.endpoint_url is not None and _is_loopback(urlsplit(config.endpoint_url).hostname or "")
    if local and session.get_credentials() is None:
        credentials = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}  # noqa: S105
    return session.client(
        "dynamodb",
        endpoint_url=config.endpoint_url,
        config=botocore.config.Config(
            max_pool_connections=max(10, config.concurrency * 2),
            retries={"total_max_attempts": 1},  # retries are ours: bounded, jittered, counted
            # Items come from encode_item, which already checked them against DynamoDB's types and
            # limits, and the service validates again; botocore's client-side walk of every request
            # would cost more CPU than the encoding itself, CPU that DynamoDB Local on the same host needs.
            parameter_validation=False,
        ),
        **credentials,
    )


def describe_type(column: ColumnType) -> str:
    """How a mapping type is stored here (`--scaffold` comments): its attribute type."""
    return attribute_type(column)


def open_sink(name: str, config: Config) -> DynamoDBSink:
    return DynamoDBSink(name, config)
