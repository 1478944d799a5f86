"""The `mongo` source: live MongoDB collections, read by `_id` keyset in bounded batches.

Reads use `find_raw_batches` so documents arrive as the server's raw BSON: batches are cut by
the documents' real BSON size and decoded straight to canonical values in C (bson_values),
one batch per server reply and, where it exists, the `_id` index as the plan.
Partitions are `_id` ranges from `$bucketAuto` (or `$sample` for very large collections);
ranges that span BSON types are read as per-type-class queries (mongo_ranges).
Incremental runs read change streams (mongo_changes), or a watermark field where those are
unavailable; deleted records are found by `_id` (mongo_keys).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Generator, Iterator, Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import bson.errors
import pymongo
import pymongo.errors
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pymongo.uri_parser import split_options

from etl import security
from etl.errors import ConnectionFailed, EtlError, did_you_mean
from etl.records import Batch, Json, Partition, Reject
from etl.redact import RedactedRepr
from etl.settings_types import Integer, described
from etl.sources import bson_values, mongo_changes, mongo_keys
from etl.sources.base import BatchLimits, ChangeCapture, SampledTable, TableName, TableSelection
from etl.sources.mongo_ranges import range_filters

log = logging.getLogger(__name__)

CHANGE_STREAMS_UNSUPPORTED = {40573, 40324, 136}
"""Server error codes meaning "no change streams here" (standalone server, no $changeStream
stage, change streams disabled)."""

ID_ORDER = [("_id", pymongo.ASCENDING)]


class MongoTable(SampledTable):
    """One collection (the key in `tables` is the collection name)."""

    query: dict[str, Any] = Field(default_factory=dict)
    """A find() filter applied to every read. Values may be Extended JSON
    (`{"$date": "2020-01-01T00:00:00Z"}`, `{"$oid": "..."}`, `{"$numberDecimal": "1.5"}`)."""

    def filter(self) -> dict[str, Any]:
        """`query` with its Extended JSON values turned into BSON values."""
        return bson_values.from_extended_json(self.query)
    sample_partitioning: Integer = Field(default=10_000_000, ge=0)
    """Above this many documents (estimated) partitions come from `$sample` instead of
    `$bucketAuto`, which reads every `_id`."""
    sample_per_partition: Integer = Field(default=100, ge=1, le=1000)
    """Sampled `_id`s per partition when sampling."""
    changes: Literal["auto", "change_stream", "watermark", "new_ids"] = "auto"
    """How incremental runs find changes: `auto` uses change streams when the server has
    them, else `watermark` when `watermark_field` is set, else `new_ids`."""
    watermark_field: str | None = None
    """A field every insert and update sets to a larger value (e.g. `updated_at`)."""

    @model_validator(mode="after")
    def _watermark_has_a_field(self) -> MongoTable:
        if self.changes == "watermark" and self.watermark_field is None:
            raise ValueError("`changes: watermark` needs `watermark_field` (the field every write sets)")
        return self


DEFAULT_TIMEOUT_MS = 10_000


JOB_SKELETON = """\
    type: mongo
    uri: ${env:ETL_SOURCE_URI}            # or ${secret:name#key}; mongodb://user@host:27017/?tls=true
    database: ${env:ETL_SOURCE_DATABASE}
"""
"""This source's section of a new job file (`--scaffold-job mongo`), indented under its name."""


class Config(RedactedRepr, BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["mongo"]
    uri: str
    """Connection string; put the password in `${secret:...}`, never in the job file."""
    database: str
    tables: dict[str, MongoTable] = {}
    select: list[TableSelection] = []
    """Collections picked by name patterns when the job starts (docs/job-files.md)."""
    server_selection_timeout_ms: Integer = Field(default=DEFAULT_TIMEOUT_MS, ge=1)
    """How long to wait for a reachable server before failing (also bounds `check`). Written here it
    wins; else the URI's `serverSelectionTimeoutMS`; else 10 s (`timeout_ms`)."""
    tls: bool | None = None
    """Force TLS on or off (None: as the URI says)."""
    tls_ca_file: str | None = None
    tls_certificate_key_file: str | None = None
    tls_allow_invalid_hostnames: bool = False

    @model_validator(mode="after")
    def _some_tables(self) -> Config:
        if "tables" not in self.model_fields_set and not self.select:
            raise ValueError("name the collections to read: `tables` or `select` (patterns)")
        return self

    def add_table(self, name: str, mapping: str, partitions: int) -> MongoTable:
        """Add a collection picked when the job starts (by `select`) and return its entry."""
        self.tables[name] = MongoTable(mapping=mapping, partitions=partitions)
        return self.tables[name]

    @field_validator("uri")
    @classmethod
    def _options_are_valid(cls, uri: str) -> str:
        """Every URI option pymongo knows, with a value it accepts (pymongo would only warn, or
        fail later with its own words): `tls=maybe` is a job-file error, not a runtime warning."""
        query = urlsplit(uri).query
        if not query:
            return uri
        for key, value in parse_qsl(query, keep_blank_values=True):
            try:
                split_options(urlencode({key: value}), validate=True, warn=False)
            except pymongo.errors.ConfigurationError:
                raise described(f"unknown MongoDB URI option '{key}'") from None
            except ValueError as error:  # the value itself is not shown: it may be a credential
                reason = str(error)
                raise described(f"MongoDB URI option '{key}': {reason[:1].lower()}{reason[1:]}") from None
        try:
            split_options(query, validate=True, warn=False)
        except (pymongo.errors.ConfigurationError, ValueError) as error:
            raise described(f"MongoDB URI options: {error}") from None
        return uri

    def timeout_ms(self) -> int:
        """Server selection timeout: `server_selection_timeout_ms` when written, else the URI's
        `serverSelectionTimeoutMS`, else 10 s."""
        if "server_selection_timeout_ms" in self.model_fields_set:
            return self.server_selection_timeout_ms
        said = _uri_options(self.uri).get("serverselectiontimeoutms")
        return max(1, round(float(said))) if said is not None else DEFAULT_TIMEOUT_MS


def open_source(name: str, config: Config, limits: BatchLimits) -> MongoSource:
    return MongoSource(name, config, limits)


def _hosts(uri: str) -> str:
    """The host list of a URI, without user, password or options (safe for messages)."""
    netloc = urlsplit(uri).netloc
    return netloc.rpartition("@")[2] or "?"


_TLS_OFF_CHECKS = ("tlsinsecure", "tlsallowinvalidcertificates", "tlsallowinvalidhostnames")
"""URI options that keep TLS but stop checking who the server is."""


def _uri_options(uri: str) -> dict[str, str]:
    return {key.lower(): value.lower() for key, value in parse_qsl(urlsplit(uri).query)}


def _uri_hosts(uri: str) -> list[str | None]:
    """Host names of a URI (None for a Unix socket path, which MongoDB URIs URL-encode)."""
    hosts: list[str | None] = []
    for entry in _hosts(uri).split(","):
        host = unquote(entry)
        if host.startswith("/") or host.endswith(".sock"):
            hosts.append(None)
        else:
            hosts.append(host.rpartition("]")[0] + "]" if host.startswith("[") else host.split(":")[0])
    return hosts


def _uri_tls(config: Config) -> bool | None:
    """TLS as `tls:` or the URI says it (`tls`/`ssl` options; `mongodb+srv://` turns it on); None: unsaid."""
    if config.tls is not None:
        return config.tls
    options = _uri_options(config.uri)
    said = options.get("tls", options.get("ssl"))
    if said is not None:
        return said == "true"
    return True if config.uri.startswith("mongodb+srv://") else None


def _tls_by_default(config: Config) -> bool:
    """Neither the URI nor `tls:` chose, and a host is not this machine: TLS on (pymongo's default is off)."""
    return _uri_tls(config) is None and not all(security.is_loopback(h) for h in _uri_hosts(config.uri))


_TLS_FIX = ("write tls=true in the URI (or `tls: true`, with `tls_ca_file:` for a private CA) and keep "
            "certificate and host name checks on")


def endpoints(config: Config) -> list[security.Endpoint]:
    """Every host of the URI and how it is secured (etl/security.py decides whether that is allowed).

    Seeds that are all this machine, without TLS, also count as one connection to the replica-set
    members pymongo may discover from them (a local seed, e.g. an SSH tunnel, can name members on
    other hosts, which pymongo then reaches with the same settings: in plaintext), unless the URI
    says `directConnection=true` (only the seed is used) or `loadBalanced=true`."""
    tls = _uri_tls(config)
    encrypted = tls if tls is not None else _tls_by_default(config)
    options = _uri_options(config.uri)
    unchecked = [name for name in _TLS_OFF_CHECKS if options.get(name) == "true"]
    if config.tls_allow_invalid_hostnames:
        unchecked.append("tls_allow_invalid_hostnames")
    setting = "tls=false" if not encrypted else "=true, ".join(unchecked) + ("=true" if unchecked else "")
    hosts = _uri_hosts(config.uri)
    found = [security.Endpoint(protocol="MongoDB", host=host, encrypted=encrypted,
                               verified=encrypted and not unchecked, fix=_TLS_FIX, setting=setting)
             for host in hosts]
    single = options.get("directconnection") == "true" or options.get("loadbalanced") == "true"
    if not encrypted and not single and all(security.is_loopback(host) for host in hosts):
        seeds = ", ".join(host or "a Unix socket" for host in hosts)
        found.append(security.Endpoint(
            protocol="MongoDB", host="replica-set members", encrypted=False, verified=False,
            fix="write directConnection=true in the URI to use only that local server, or " + _TLS_FIX,
            setting=f"{setting}, no directConnection=true",
            origin=f"discovered through the local seed {seeds}"))
    return found


class MongoSource:
    """A Source (etl/sources/base.py) over one MongoDB database."""

    def __init__(self, name: str, config: Config, limits: BatchLimits) -> None:
        self.name = name
        self.config = config
        self.limits = limits
        options: dict[str, Any] = {
            "serverSelectionTimeoutMS": config.timeout_ms(),
            "uuidRepresentation": "standard",
            "tz_aware": True,
            "appname": "etl",
        }
        if "connecttimeoutms" not in _uri_options(config.uri):
            options["connectTimeoutMS"] = config.timeout_ms()
        if config.tls is not None:
            options["tls"] = config.tls
        elif _tls_by_default(config):
            options["tls"] = True
        if config.tls_ca_file:
            options["tlsCAFile"] = config.tls_ca_file
        if config.tls_certificate_key_file:
            options["tlsCertificateKeyFile"] = config.tls_certificate_key_file
        if config.tls_allow_invalid_hostnames:
            options["tlsAllowInvalidHostnames"] = True
        try:
            self.client: pymongo.MongoClient = pymongo.MongoClient(config.uri, **options)
        except (pymongo.errors.ConfigurationError, ValueError) as error:
            raise EtlError(
                f"source {name!r}: invalid MongoDB connection string for {_hosts(config.uri)}: "
                f"{type(error).__name__}", hint="check `uri` and the TLS options") from None
        self.database = self.client.get_database(
            config.database, codec_options=bson_values.NATIVE_CODEC)
        self._id_indexes: dict[str, list[tuple[str, int]] | None] = {}
        self._change_modes: dict[str, str] = {}

    # -- Source protocol ---------------------------------------------------------------------

    def table_names(self) -> list[TableName]:
        """The database's collections (views included, as views), sorted, for `select` patterns."""
        found = self._guard(lambda: list(self.database.list_collections()))
        return sorted(TableName("", entry["name"], entry.get("type") == "view") for entry in found
                      if not entry["name"].startswith("system."))

    def check(self) -> None:
        existing = set(self._guard(self.database.list_collection_names))
        for table in self.config.tables:
            self._require(table, existing)

    def _require(self, table: str, existing: set[str] | None = None) -> None:
        """A collection that does not exist reads as empty in MongoDB; here it is an error, so a
        misspelt or dropped collection cannot pass as a migrated empty one."""
        if existing is None:
            existing = set(self._guard(lambda: self.database.list_collection_names(filter={"name": table})))
            if table in existing:
                return
            existing = set(self._guard(self.database.list_collection_names))
        if table not in existing:
            raise EtlError(
                f"source {self.name!r}: collection {table!r} does not exist in database "
                f"{self.config.database!r}{did_you_mean(table, existing)}",
                hint="fix the collection name under `tables`; the database has: "
                     + (", ".join(sorted(existing)[:20]) or "(no collections)"))

    def plan(self, table: str, partitions: int) -> list[Partition]:
        settings = self._table(table)
        self._require(table)
        if partitions <= 1:
            return [Partition(self.name, table, 0, 1)]
        bounds = self._guard(lambda: self._split_points(table, settings, partitions))
        edges: list[Any] = [None, *[bson_values.id_to_json(value) for value in bounds], None]
        return [Partition(self.name, table, index, len(edges) - 1, edges[index], edges[index + 1])
                for index in range(len(edges) - 1)]

    def read(self, partition: Partition, *, resume_after: Json = None,
             fields: Sequence[str] | None = None) -> Iterator[Batch]:
        """The partition's documents from `resume_after` on, with `_id` and `fields` only.

        Documents are read whole while none holds a field beyond those: a projection that keeps
        every field is work for the server and nothing less to send (SecantusDB answered a read of
        20,000 documents in 2.5 s with one, 0.7 s without). The first batch with another field is
        projected here, and the rest of the range is read again from after that batch with the
        server projecting."""
        projection = None
        while True:
            batches = self._read_range(partition, resume_after, projection)
            try:
                for batch in batches:
                    if fields is None or projection is not None:
                        yield batch
                        continue
                    projected = bson_values.project(batch.records, fields)
                    narrowed = projected is not batch.records
                    batch.records = projected
                    yield batch
                    if narrowed:
                        projection, resume_after = bson_values.projection(fields), batch.resume_after
                        break
                else:
                    return
            finally:
                batches.close()

    def _read_range(self, partition: Partition, resume_after: Json, projection: dict | None
                    ) -> Generator[Batch, None, None]:
        collection = self.database[partition.table]
        settings = self._table(partition.table)
        has_start = resume_after is not None or partition.lower is not None
        start = bson_values.id_from_json(resume_after if resume_after is not None else partition.lower) \
            if has_start else None
        has_end = partition.upper is not None
        end = bson_values.id_from_json(partition.upper) if has_end else None
        filters = range_filters(start, resume_after is None, end, has_start=has_start, has_end=has_end)
        hint = None if settings.query else self._id_index(partition.table)
        for id_filter in filters:
            query = _and(settings.filter(), id_filter)
            # Replies of at most one batch: the server's default (up to 16 MiB) would make a
            # reader hold a reply per partition far larger than the batch budget.
            cursor = collection.find_raw_batches(
                query, projection, sort=ID_ORDER, hint=hint, batch_size=self.limits.records)
            for batch, _ in self._batches(partition.table, cursor):
                yield batch

    def key_text(self, table: str, record: dict) -> str:
        return bson_values.key_text(record)

    def key_range(self, partition: Partition) -> tuple[str | None, str | None]:
        """The partition's `_id` bounds as key text (`_id=ObjectId('…')`; None: unbounded)."""
        return tuple(  # type: ignore[return-value]
            None if bound is None else bson_values.key_text({"_id": bson_values.id_from_json(bound)})
            for bound in (partition.lower, partition.upper))

    def server_version(self) -> str:
        """The server's version as it reports it (`buildInfo`), for `--check`."""
        info = self._guard(lambda: self.client.admin.command("buildInfo"))
        return f"MongoDB {info.get('version', 'unknown version')}"

    def estimate(self, table: str) -> int | None:
        """About how many documents `table` holds, from the collection's metadata (no scan); None
        when the table has a `query` filter, which the estimate would ignore."""
        if self._table(table).query:
            return None
        return int(self._guard(self.database[table].estimated_document_count))

    def count(self, table: str) -> int | None:
        self._require(table)
        settings = self._table(table)
        return int(self._guard(lambda: self.database[table].count_documents(settings.filter())))

    def sample(self, table: str, n: int) -> list[dict]:
        """The first `n` documents in `_id` order (the same plan as a read: `_id_index`)."""
        settings = self._table(table)
        hint = None if settings.query else self._id_index(table)
        cursor = self.database[table].find_raw_batches(
            settings.filter(), sort=ID_ORDER, hint=hint, limit=n, batch_size=n)
        records: list[dict] = []
        for chunk in self._guarded(cursor):
            decoded, _ = bson_values.decode_run(chunk, table, self._server_corrupt(table))
            records.extend(decoded)
        return records[:n]

    def close(self) -> None:
        self.client.close()

    # -- incremental runs (ChangeSource, etl/sources/base.py) -------------------------------

    def change_capture(self, table: str) -> ChangeCapture:
        settings = self._table(table)
        mode = self._change_mode(table, settings)
        if mode == "change_stream":
            return ChangeCapture("change stream", deletes=True)
        if mode == "watermark":
            return ChangeCapture(f"watermark {settings.watermark_field}", deletes=False)
        return ChangeCapture("new _ids", deletes=False)

    def change_position(self, table: str) -> Json:
        """Where changes start for `table`: take it *before* a full load, then pass it to
        `changes` afterwards so nothing written during the load is missed. Plain JSON, with `at`,
        the server's cluster time when it was taken (ISO 8601 UTC)."""
        settings = self._table(table)
        mode = self._change_mode(table, settings)
        collection = self.database[table]
        with self._guard(self.client.start_session) as session:
            if mode == "change_stream":
                with self._guard(lambda: collection.watch(max_await_time_ms=1, session=session)) as stream:
                    self._guard(stream.try_next)
                    return mongo_changes.position(stream.resume_token, session.operation_time)
            if mode == "watermark":
                field = settings.watermark_field
                top = self._guard(lambda: collection.find_one(
                    {field: {"$exists": True}}, {field: 1}, sort=[(field, -1), ("_id", -1)], session=session))
                after = None if top is None else bson_values.id_to_json([top[field], top["_id"]])
            else:
                top = self._guard(lambda: collection.find_one(
                    {}, {"_id": 1}, sort=[("_id", -1)], session=session))
                after = None if top is None else bson_values.id_to_json(top["_id"])
            return {"mode": mode, "after": after, "at": mongo_changes.time_text(session.operation_time)}

    def changes(self, table: str, position: Json, *, fields: Sequence[str] | None = None,
                wait_ms: int = 0) -> Iterator[Batch]:
        """Yield what changed since `position` (from `change_position` or a previous batch's
        `resume_after`) until no more changes are waiting, after waiting up to `wait_ms` for a
        first one when none is.

        Each batch holds the current full documents of inserted/updated/replaced keys that match
        the table's `query` in `records`, and `{"_id": key}` of deleted keys (and of changed ones
        that no longer match) in `deletes`; a key appears in one list only (its last state in the
        batch), so the order of applying them does not matter. `resume_after` is the position to
        store once the batch is committed."""
        mode = position["mode"]
        if mode == "change_stream":
            yield from self._change_stream(table, position, fields, wait_ms)
        elif mode == "watermark":
            yield from self._watermark_changes(table, position, fields)
        elif mode == "new_ids":
            partition = Partition(self.name, table, 0, 1)
            for batch in self.read(partition, resume_after=position["after"], fields=fields):
                yield Batch(batch.records, {"mode": mode, "after": batch.resume_after}, batch.rejects,
                            kinds={"insert": batch.extracted})
        else:
            raise EtlError(f"source {self.name!r}: unknown change position mode {mode!r}",
                           hint="the stored position was not made by the mongo source")

    def key_of(self, table: str, record: dict) -> Json:
        return mongo_keys.key_json(record["_id"])

    def missing_keys(self, table: str, keys: Sequence[Json]) -> list[Json]:
        """Those of `keys` with no document at the server now that matches the table's `query`. The
        server decides equality (1, 1.0 and NumberLong(1) are one `_id`), in one aggregation."""
        if not keys:
            return []
        settings = self._table(table)
        asked: list[dict[str, Any]] = [
            {"i": index, "c": mongo_keys.candidates(key)} for index, key in enumerate(keys)
        ]
        every = [value for entry in asked for value in entry["c"]]
        found = {"$anyElementTrue": [
            {"$map": {"input": "$$k.c", "as": "v", "in": {"$in": ["$$v", "$found"]}}}]}
        pipeline = [
            {"$match": _and(settings.filter(), {"_id": {"$in": every}})},
            {"$group": {"_id": None, "found": {"$push": "$_id"}}},
            {"$project": {"_id": 0, "missing": {"$map": {
                "input": {"$filter": {"input": {"$literal": asked}, "as": "k", "cond": {"$not": [found]}}},
                "as": "k", "in": "$$k.i"}}}},
        ]
        rows = self._guard(lambda: list(self.database[table].aggregate(pipeline)))
        missing = rows[0]["missing"] if rows else range(len(keys))
        return [keys[index] for index in missing]

    # -- internals ---------------------------------------------------------------------------

    def _table(self, table: str) -> MongoTable:
        try:
            return self.config.tables[table]
        except KeyError:
            raise EtlError(f"source {self.name!r}: collection {table!r} is not under `tables`; "
                           f"configured: {', '.join(sorted(self.config.tables))}") from None

    def _split_points(self, table: str, settings: MongoTable, partitions: int) -> list[Any]:
        """Ascending, distinct `_id` values splitting the collection into `partitions` ranges."""
        collection = self.database[table]
        if collection.estimated_document_count() > settings.sample_partitioning:
            size = partitions * settings.sample_per_partition
            ids = [row["_id"] for row in collection.aggregate([
                {"$sample": {"size": size}}, {"$project": {"_id": 1}}, {"$sort": {"_id": 1}}],
                allowDiskUse=True)]
            step = len(ids) / partitions
            candidates = [ids[int(step * index)] for index in range(1, partitions)] if ids else []
        else:
            buckets = list(collection.aggregate([
                {"$bucketAuto": {"groupBy": "$_id", "buckets": partitions}}], allowDiskUse=True))
            candidates = [bucket["_id"]["min"] for bucket in buckets[1:]]
        points: list[Any] = []
        for candidate in candidates:  # already in `_id` order; drop repeats (few distinct ids)
            if not points or bson_values.id_to_json(points[-1]) != bson_values.id_to_json(candidate):
                points.append(candidate)
        return points

    def _id_index(self, table: str) -> list[tuple[str, int]] | None:
        """ID_ORDER as a hint when the collection has the `_id` index (views and time-series
        collections have none): the server then walks that index, already in `_id` order,
        instead of sorting the result (which this source's reads always ask for)."""
        if table not in self._id_indexes:
            try:
                keys = [dict(index["key"]) for index in self.database[table].list_indexes()]
            except pymongo.errors.OperationFailure:
                keys = []  # a view: it has no indexes of its own
            except pymongo.errors.PyMongoError as error:
                raise self._translate(error) from None
            self._id_indexes[table] = ID_ORDER if {"_id": 1} in keys else None
        return self._id_indexes[table]

    def _batches(self, table: str, cursor: Any) -> Iterator[tuple[Batch, dict]]:
        """Batches cut from a raw cursor, each with its last document decoded natively (its
        exact `_id` and fields make the resume position)."""
        cutter = bson_values.RunCutter(self.limits)
        try:
            for chunk in self._guarded(cursor):
                for run in cutter.feed(chunk):
                    yield bson_values.gc_paused(self._batch, table, run)
        except bson.errors.InvalidBSON as error:
            raise self._undecodable(table, error) from None
        last = cutter.flush()
        if last is not None:
            yield bson_values.gc_paused(self._batch, table, last)

    def _batch(self, table: str, run: tuple[bson_values.Buffer, int]) -> tuple[Batch, dict]:
        data, last_offset = run
        records, rejects = bson_values.decode_run(data, table, self._server_corrupt(table))
        last = bson_values.native_document(data, last_offset)
        return Batch(records, bson_values.id_to_json(last.get("_id")), rejects), last

    def _server_corrupt(self, table: str) -> bson_values.CorruptHandler:
        def handle(offset: int, error: Exception) -> Reject:
            raise self._undecodable(table, error)
        return handle

    def _undecodable(self, table: str, error: Exception) -> EtlError:
        return EtlError(f"source {self.name!r}: collection {table!r}: the server sent a document "
                        f"that does not decode ({type(error).__name__}: {error})",
                        hint="check the server's data with `validate`")

    def _change_mode(self, table: str, settings: MongoTable) -> str:
        """`changes:` of the table, with `auto` resolved once per table by asking the server for a
        change stream."""
        if settings.changes != "auto":
            return settings.changes
        if table not in self._change_modes:
            self._change_modes[table] = self._auto_change_mode(table, settings)
        return self._change_modes[table]

    def _auto_change_mode(self, table: str, settings: MongoTable) -> str:
        try:
            with self.database[table].watch(max_await_time_ms=1) as stream:
                stream.try_next()
            return "change_stream"
        except pymongo.errors.OperationFailure as error:
            if error.code not in CHANGE_STREAMS_UNSUPPORTED:
                raise self._translate(error) from None
        except pymongo.errors.PyMongoError as error:
            raise self._translate(error) from None
        return "watermark" if settings.watermark_field else "new_ids"

    def _change_stream(self, table: str, position: Json, fields: Sequence[str] | None,
                       wait_ms: int) -> Iterator[Batch]:
        settings = self._table(table)
        collection = self.database.get_collection(table, codec_options=mongo_changes.RAW_CODEC)
        token = mongo_changes.token_from_json(position["token"])

        def watch(await_ms: int) -> Any:
            return self._stream_guard(table, lambda: collection.watch(
                full_document="updateLookup", resume_after=token, max_await_time_ms=await_ms))

        if wait_ms > 0:  # wait for a first change on a stream of its own: later reads must not wait
            with watch(wait_ms) as probe:
                if self._stream_guard(table, probe.try_next) is None:
                    return
        with watch(1) as stream:
            fold = mongo_changes.ChangeFold(self.limits)
            while True:
                raw = self._stream_guard(table, stream.try_next)
                event = None if raw is None else self._change_event(table, raw)
                if event is not None and not (event.changes_document or event.ends_stream):
                    continue  # an event that changes no document (an index built, options changed)
                if event is None or event.ends_stream or fold.full(event):
                    if fold:
                        yield self._change_batch(table, settings, fold, fields)
                        fold = mongo_changes.ChangeFold(self.limits)
                    if event is None:
                        return
                    if event.ends_stream:
                        raise mongo_changes.stream_end_error(self.name, table, event.kind)
                fold.add(event, stream.resume_token)

    def _change_event(self, table: str, raw: Any) -> mongo_changes.ChangeEvent:
        try:
            return mongo_changes.ChangeEvent.of(raw)
        except bson.errors.InvalidBSON as error:
            raise self._undecodable(table, error) from None

    def _change_batch(self, table: str, settings: MongoTable, fold: mongo_changes.ChangeFold,
                      fields: Sequence[str] | None) -> Batch:
        matching: set[str] | None = None
        pending = fold.pending_keys()
        if settings.query and pending:  # which changed documents match the filter now (others: deletes)
            collection = self.database.get_collection(table, codec_options=bson_values.CANONICAL_CODEC)
            query = _and(settings.filter(), {"_id": {"$in": pending}})
            matching = {mongo_keys.key_json(row["_id"])
                        for row in self._guarded(collection.find(query, {"_id": 1}))}
        return bson_values.gc_paused(fold.batch, table, fields, matching, self._server_corrupt(table))

    def _stream_guard(self, table: str, action: Any) -> Any:
        """`_guard` for change streams: a position the oplog no longer holds says so."""
        try:
            return action()
        except pymongo.errors.OperationFailure as error:
            if error.code in mongo_changes.HISTORY_LOST:
                raise mongo_changes.history_lost_error(self.name, table, error.code) from None
            raise self._translate(error) from None
        except pymongo.errors.PyMongoError as error:
            raise self._translate(error) from None

    def _watermark_changes(self, table: str, position: Json, fields: Sequence[str] | None
                           ) -> Iterator[Batch]:
        settings = self._table(table)
        field = settings.watermark_field
        if field is None:  # the position was stored under another configuration
            raise EtlError(f"source {self.name!r}: collection {table!r}: the stored position follows a "
                           "watermark field, but the table has no `watermark_field`",
                           hint="set `watermark_field` back, or run a full load again (`--full-refresh`)")
        collection = self.database[table]
        after = position["after"]
        condition: dict[str, Any] = {field: {"$exists": True}}
        if after is not None:
            mark, last_id = bson_values.id_from_json(after)
            condition = {"$or": [{field: {"$gt": mark}}, {field: mark, "_id": {"$gt": last_id}}]}
        projection = bson_values.projection(None if fields is None else [*fields, field])
        cursor = collection.find_raw_batches(_and(settings.filter(), condition), projection,
                                             sort=[(field, 1), ("_id", 1)],
                                             batch_size=self.limits.records)
        for batch, last in self._batches(table, cursor):
            value = last.get(field)
            at = value.astimezone(datetime.UTC).isoformat() if isinstance(value, datetime.datetime) else None
            mark = bson_values.id_to_json([value, last.get("_id")])
            yield Batch(batch.records, {"mode": "watermark", "after": mark, "at": at}, batch.rejects,
                        kinds={"upsert": batch.extracted}, at=at)

    def _guard(self, action: Any) -> Any:
        """Run `action`, turning server failures into EtlErrors (ConnectionFailed when the
        server is unreachable or refuses the credentials)."""
        try:
            return action()
        except pymongo.errors.PyMongoError as error:
            raise self._translate(error) from None

    def _guarded(self, iterable: Any) -> Iterator[Any]:
        """Iterate a cursor lazily with the same translation of failures as `_guard`."""
        iterator = iter(iterable)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except pymongo.errors.PyMongoError as error:
                raise self._translate(error) from None
            yield item

    def _translate(self, error: pymongo.errors.PyMongoError) -> EtlError:
        if isinstance(error, pymongo.errors.OperationFailure) and error.code not in (13, 18):
            message = (error.details or {}).get("errmsg", "")
            return EtlError(f"source {self.name!r}: MongoDB refused an operation on database "
                            f"{self.config.database!r}: {message} (code {error.code})")
        return self._connection_error(error)

    def _connection_error(self, error: Exception) -> ConnectionFailed:
        code = getattr(error, "code", None)
        what = "authentication failed" if code == 18 else (
            "not authorized" if code == 13 else f"cannot reach the server ({type(error).__name__})")
        return ConnectionFailed(
            f"source {self.name!r}: MongoDB at {_hosts(self.config.uri)}: {what} "
            f"(waited at most {self.config.timeout_ms()} ms)",
            hint="check the host, port, user and password (the password is not shown) and TLS options")


def _and(query: dict, condition: dict) -> dict:
    if not query:
        return condition
    if not condition:
        return query
    return {"$and": [query, condition]}
