"""`--scaffold SOURCE.TABLE`: a first mapping for a table, proposed from what the source says about it.

A relational table's columns come from its catalogue with the mapping type that holds each one
without loss (`Catalogue.types`, decided by the engine's source module) and its key; a MongoDB
collection's fields from sampled documents, with the types, frequencies and examples seen as YAML
comments (never examples of a field whose name suggests personal data, `looks_like_pii`). Arrays of
documents become exploded outputs: PostgreSQL child tables, DynamoDB items keyed by the element's key.
Each target of the job gets outputs; comments say how each type is stored there (the sink module's
`describe_type`). The proposal is a valid mapping: review it, then `--plan` and `--profile` it.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl import sinks as sink_registry
from etl import sources as source_registry
from etl.coltypes import parse_type
from etl.errors import JobFileError
from etl.mapping.pii import looks_like_pii
from etl.mapping.types import type_name
from etl.redact import redact

EXPLODE_DEPTH = 3
"""Arrays of documents nested deeper than this stay whole (`type: list`)."""
EXAMPLES = 2
"""Distinct example values shown per field."""
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OBSERVED_TYPES = {
    "bool": "bool", "int": "int", "bson.Int64": "int", "float": "float", "Decimal": "decimal",
    "bson.Decimal128": "decimal", "str": "string", "datetime": "timestamptz(3)", "date": "date",
    "bson.ObjectId": "string", "UUID": "uuid", "bytes": "bytes", "bson.Binary": "bytes", "dict": "json",
    "list": "list",
}
"""Python/BSON type names of sampled values -> the mapping type that holds them without loss."""
_NUMBERS = {"int", "float", "decimal"}


@dataclass
class Field:
    """What the sample showed of one field (at the top level or inside an array's elements)."""

    name: str
    present: int = 0
    nulls: int = 0
    kinds: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    elements: list[dict] = field(default_factory=list)
    """The documents found in this field's arrays (for an exploded output)."""
    scalars: int = 0
    """Array members that are not documents."""

    def add(self, value: Any) -> None:
        self.present += 1
        if value is None:
            self.nulls += 1
            return
        self.kinds[type_name(value)] += 1
        if isinstance(value, list):
            documents = [member for member in value if isinstance(member, dict)]
            self.elements.extend(documents)
            self.scalars += len(value) - len(documents)
        elif not isinstance(value, dict) and len(self.examples) < EXAMPLES:
            shown = json.dumps(value, default=str, ensure_ascii=False)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            if shown not in self.examples:
                self.examples.append(shown)

    @property
    def documents(self) -> bool:
        """An array of documents (and nothing else): proposed as an exploded output."""
        return set(self.kinds) == {"list"} and bool(self.elements) and not self.scalars

    @property
    def mapping_type(self) -> str:
        """The type that holds every value seen: one kind's type, `decimal` for mixed numbers, `json`
        (any value, kept as it is) for anything else, and for a field seen only null."""
        types = {_OBSERVED_TYPES.get(kind, "json") for kind in self.kinds}
        if len(types) == 1:
            return types.pop()
        if types and types <= _NUMBERS:
            return "decimal"
        return "json"

    def comment(self, seen: int) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.kinds.most_common()) or "only null"
        nulls = f", null in {self.nulls}" if self.nulls else ""
        text = f"in {self.present} of {seen}{nulls}: {kinds}"
        if len(self.kinds) > 1:
            text += "; mixed types: kept as they are (json); pick one type and `--profile` the rejects"
        if looks_like_pii(self.name):
            return text + "; values not shown (the name suggests personal data)"
        if self.examples:
            text += "; e.g. " + ", ".join(self.examples)
        return redact(text)


def observe(records: Iterable[dict]) -> tuple[int, dict[str, Field]]:
    """(records seen, their top-level fields in order of first appearance)."""
    fields: dict[str, Field] = {}
    seen = 0
    for record in records:
        seen += 1
        for name, value in record.items():
            fields.setdefault(name, Field(name)).add(value)
    return seen, fields


def element_key(fields: dict[str, Field], elements: list[dict]) -> str | None:
    """The field that identifies an array's elements: named `id`, `..._id` or `...Id`, in every element,
    with integer or text values, all distinct in the sample (keys of other parents included)."""
    for name, found in fields.items():
        if not (name.lower() == "id" or name.lower().endswith("_id") or name.endswith("Id")):
            continue
        keyish = set(found.kinds) <= {"int", "bson.Int64", "str"}
        if found.present != len(elements) or found.nulls or not keyish:
            continue
        values = [element[name] for element in elements]
        if len(set(values)) == len(values):
            return name
    return None


def path_text(name: str) -> str | None:
    """A field name as a mapping path: bare when it is an identifier, in backquotes otherwise; None for a
    name a mapping cannot read (`__x__`, backquotes)."""
    if name.startswith("__") and name.endswith("__") or "`" in name or not name:
        return None
    return name if _IDENTIFIER.fullmatch(name) else f"`{name}`"


def column_name(name: str, taken: set[str]) -> str:
    """A target column name for a field: letters, digits and `_`, no leading `_`, at most 63 bytes,
    unique among `taken` (which it joins)."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_")[:60] or "field"
    if base[0].isdigit():
        base = "f_" + base
    candidate, n = base, 2
    while candidate.lower() in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate.lower())
    return candidate


@dataclass
class Proposal:
    """The mapping being written, as lines of YAML."""

    targets: dict[str, str]
    lines: list[str] = field(default_factory=list)
    dynamo_types: dict[tuple[str, str], str] = field(default_factory=dict)
    """(table, attribute) -> type across the item types of one DynamoDB table (one type each)."""

    def describe(self, kind: str, type_text: str) -> str:
        return sink_registry.module_for(kind).describe_type(parse_type(type_text))


def _column(name: str, source: str, type_text: str, comment: str) -> str:
    return f"      {name}: {{from: {source}, type: {json.dumps(type_text)}}}  # {comment}"


def _table_name(name: str) -> str:
    return column_name(name.rsplit(".", 1)[-1].lower(), set())


def propose_documents(table: str, records: list[dict], targets: dict[str, str], key: list[str],
                      header: list[str]) -> str:
    """A mapping for sampled documents (`key`: the source key fields, `[_id]`)."""
    seen, fields = observe(records)
    if not seen or any(name not in fields for name in key):
        raise JobFileError(f"--scaffold: {table} has no documents with {', '.join(key)} to sample",
                           hint="scaffold a collection that holds documents")
    proposal = Proposal(targets)
    pii = [name for name in fields if looks_like_pii(name)]
    lines = [*header, f"# {seen} documents sampled; each column's comment: how many had the field, the types "
             "seen and examples"]
    if pii:
        lines.append("# fields whose names suggest personal data (types only, no values shown): "
                     f"{', '.join(pii)}; consider `pii:` rules (docs/mapping.md, PII transforms)")
    lines += ["version: 1", "source:", f"  key: [{', '.join(key)}]", "targets:"]
    lines += [f"  {name}: {kind}" for name, kind in targets.items()]
    lines.append("outputs:")
    proposal.lines = lines
    name = _table_name(table)
    for target, kind in targets.items():
        rules = sink_registry.rules_for(kind)
        if rules.child_tables:
            _relational_outputs(proposal, target, kind, name, fields, seen, key)
        else:
            _item_outputs(proposal, target, kind, name, fields, seen, key)
    return "\n".join(proposal.lines) + "\n"


def _scalar_columns(proposal: Proposal, kind: str, fields: dict[str, Field], seen: int, taken: set[str],
                    skip: Iterable[str] = (), table: str | None = None) -> list[str]:
    lines = []
    for name, found in fields.items():
        source = path_text(name)
        if name in skip or found.documents and source is not None:
            continue
        if source is None:
            lines.append(f"      # field {name!r} cannot be read by a mapping path; left out")
            continue
        type_text = found.mapping_type
        column = column_name(name, taken)
        if table is not None:  # one DynamoDB table: one type per attribute across its item types
            while proposal.dynamo_types.setdefault((table, column), type_text) != type_text:
                column = column_name(f"{column}_{type_text.split('(')[0]}", taken)
        comment = f"{proposal.describe(kind, type_text)}; {found.comment(seen)}"
        lines.append(_column(column, source, type_text, comment))
    return lines


def _relational_outputs(proposal: Proposal, target: str, kind: str, table: str, fields: dict[str, Field],
                        seen: int, key: list[str]) -> None:
    taken: set[str] = set()
    key_columns = [column_name(name, taken) for name in key]
    lines = [f"  - target: {target}", f"    table: {table}", f"    key: [{', '.join(key_columns)}]",
             "    columns:"]
    for column, name in zip(key_columns, key, strict=True):
        found = fields[name]
        lines.append(_column(column, path_text(name) or name, found.mapping_type,
                             f"{proposal.describe(kind, found.mapping_type)}; the source key"))
    lines += _scalar_columns(proposal, kind, fields, seen, taken, skip=key)
    proposal.lines += lines
    _child_tables(proposal, target, kind, table, key_columns, fields, "", 1)


def _child_tables(proposal: Proposal, target: str, kind: str, parent: str, parent_key: list[str],
                  fields: dict[str, Field], prefix: str, depth: int) -> None:
    for name, found in fields.items():
        source = path_text(name)
        if not found.documents or source is None:
            continue
        if depth > EXPLODE_DEPTH:
            continue
        seen, inner = observe(found.elements)
        identity = element_key(inner, found.elements)
        table = column_name(f"{parent}_{name}".lower(), set())
        explode = f"{prefix}{source}[]"
        taken = {column.lower() for column in parent_key}
        lines = [f"  - target: {target}", f"    table: {table}", f"    explode: {explode}",
                 f"    parent: {parent}"]
        if identity is not None:
            key = [column_name(identity, set(taken))]  # the name its column gets below
            lines.append(f"    key: [{key[0]}]   # `{identity}` was distinct in all {seen} sampled elements")
        else:
            taken.add("ordinal")
            key = [*parent_key, "ordinal"]
            lines.append(f"    # key: ({', '.join(key)}), the parent's key and the element's position")
        lines.append("    columns:")
        columns = _scalar_columns(proposal, kind, inner, seen, taken)
        if identity is not None:  # the key column first, under its own name
            columns.sort(key=lambda line: not line.startswith(f"      {key[0]}: "))
        lines += columns or [f"      # the {seen} sampled elements have no scalar fields"]
        proposal.lines += lines
        _child_tables(proposal, target, kind, table, key, inner, f"{explode}.", depth + 1)


def _item_outputs(proposal: Proposal, target: str, kind: str, table: str, fields: dict[str, Field],
                  seen: int, key: list[str]) -> None:
    prefix = table.upper()
    template = "#".join(f"{{{path_text(name) or name}}}" for name in key)
    taken = {"pk", "sk"}
    lines = [f"  - target: {target}", f"    table: {table}", "    key: [pk, sk]", "    columns:",
             f"      pk: {{template: {json.dumps(f'{prefix}#{template}')}}}  # S; from the source key",
             "      sk: {const: PROFILE}  # S; one item per record, beside the items of its arrays"]
    proposal.dynamo_types.update({(table, "pk"): "string", (table, "sk"): "string"})
    kept = [name for name, found in fields.items() if found.documents and path_text(name) is not None
            and element_key(observe(found.elements)[1], found.elements) is None]
    lines += _scalar_columns(proposal, kind, fields, seen, taken, table=table)
    for name in kept:  # arrays whose elements have no key: kept whole in the record's item
        column = column_name(name, taken)
        proposal.dynamo_types[(table, column)] = "list"
        lines.append(f"      {column}: {{from: {path_text(name)}, type: list}}  # L; its elements have no "
                     f"key field to make items of; {fields[name].comment(seen)}")
    proposal.lines += lines
    root = "#".join(f"{{$root.{path_text(name) or name}}}" for name in key)
    for name, found in fields.items():
        if name in kept or not found.documents or path_text(name) is None:
            continue
        count, inner = observe(found.elements)
        identity = element_key(inner, found.elements)
        assert identity is not None  # arrays whose elements have no key are in `kept`
        taken = {"pk", "sk"}
        sort = f"{column_name(name, set()).upper()}#{{{path_text(identity) or identity}}}"
        proposal.lines += [
            f"  - target: {target}", f"    table: {table}", f"    explode: {path_text(name)}[]",
            "    key: [pk, sk]", "    columns:",
            f"      pk: {{template: {json.dumps(f'{prefix}#{root}')}}}  # S; the record's partition",
            f"      sk: {{template: {json.dumps(sort)}}}  # S; from the element's key `{identity}`",
            *_scalar_columns(proposal, kind, inner, count, taken, table=table),
        ]


def propose_columns(table: str, catalogue, targets: dict[str, str], header: list[str]) -> str:
    """A mapping for a relational table from its catalogue: every column, typed without loss."""
    if not catalogue.key:
        raise JobFileError(f"{catalogue.described} has no primary key",
                           hint="give the table `key: [...]` in the job file, then scaffold it again")
    proposal = Proposal(targets)
    key = list(catalogue.key)
    typed = {column: type_text for column, type_text in catalogue.types.items() if type_text is not None}
    untyped = [column for column in catalogue.types if column not in typed]
    lines = [*header, f"# columns of {catalogue.described}, typed to hold their values without loss",
             "version: 1", "source:", f"  key: [{', '.join(key)}]"]
    if untyped:
        lines += [f"  ignore: [{', '.join(untyped)}]   # no mapping type holds these exactly (intervals): "
                  "read them through a view that casts them to text to keep them"]
    lines.append("targets:")
    lines += [f"  {name}: {kind}" for name, kind in targets.items()]
    lines.append("outputs:")
    name = _table_name(table)
    for target, kind in targets.items():
        taken: set[str] = set()
        if not sink_registry.rules_for(kind).child_tables:
            taken |= {"pk", "sk"}
        columns = {column: column_name(column.lower(), taken) for column in typed}
        lines += [f"  - target: {target}", f"    table: {name}"]
        if sink_registry.rules_for(kind).child_tables:
            lines += [f"    key: [{', '.join(columns[column] for column in key)}]", "    columns:"]
        else:
            template = "#".join(f"{{{path_text(column) or column}}}" for column in key)
            pk = json.dumps(f"{name.upper()}#{template}")
            lines += ["    key: [pk, sk]", "    columns:", f"      pk: {{template: {pk}}}  # S; from the key",
                      "      sk: {const: ROW}  # S"]
        for column, type_text in typed.items():
            role = "; key" if column in key else ""
            lines.append(_column(columns[column], path_text(column) or column, type_text,
                                 f"{proposal.describe(kind, type_text)}{role}"))
    return "\n".join(lines) + "\n"


def run_scaffold(job, table: str, *, sample: int, output: str | None) -> int:
    """`--scaffold SOURCE.TABLE`: write the proposal to `output` (never over an existing file) or stdout."""
    source_name, _, name = table.partition(".")
    if not name and len(job.sources) == 1:
        source_name, name = next(iter(job.sources)), table
    if source_name not in job.sources or not name:
        raise JobFileError(f"--scaffold {table}: name a table as SOURCE.TABLE",
                           hint="sources of the job: " + ", ".join(job.sources))
    config = job.sources[source_name].model_copy(deep=True)
    if name not in config.tables:
        if not hasattr(config, "add_table"):
            raise JobFileError(f"--scaffold {table}: list {name!r} under the source's `tables:` first")
        config.add_table(name, "(scaffold)", 1)
    targets = {target: settings.type for target, settings in job.targets.items()}
    header = [f"# proposed by `python -m etl.run {job.path.name} --scaffold {table}`: review every line"]
    source = source_registry.module_for(config.type).open_source(source_name, config, job.batch.limits())
    try:
        if hasattr(source, "catalogue"):
            text = propose_columns(name, source.catalogue(name), targets, header)
        else:
            text = propose_documents(name, source.sample(name, sample), targets, ["_id"], header)
    finally:
        source.close()
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        with Path(output).open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise JobFileError(f"--output {output}: the file exists; it is never overwritten",
                           hint="name a new file, or move the old one away") from None
    print(f"mapping proposal written to {output}", file=sys.stderr)
    return 0
