"""AWS DMS object-mapping rules translated into ordinary outputs.

The rule keys are DMS's own (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.DynamoDB.html,
"Using object mapping to migrate data to DynamoDB"): `rule-action` map-record-to-record or
map-record-to-document, `target-table-name`, and `mapping-parameters` with partition-key-name,
sort-key-name, exclude-columns and attribute-mappings (scalar `${column}` templates, JSON-string
templates with literal braces, and `dynamodb-map` documents). DMS leaves NULL source values out of
DynamoDB items, so a translated output has `nulls: omit`.

DMS copies a table's remaining columns implicitly. When the table's columns are known (a whole DMS
document given to a relational source: `etl/mapping/dms_document.py` passes the catalogue's
columns), map-record-to-record copies every column not excluded and map-record-to-document puts
every column not excluded in `_doc`. A single rule written in a YAML mapping has no catalogue:
map-record-to-record lists the columns to copy under `copy-columns` (name: type), and the engine
refuses a rule that leaves a column of the source neither copied nor excluded. Every translated
node keeps its place in the file for errors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from etl.located import Node

DMS_KEYS = frozenset(
    {
        "rule-type",
        "rule-id",
        "rule-name",
        "rule-action",
        "object-locator",
        "target-table-name",
        "mapping-parameters",
    }
)
PARAMETER_KEYS = frozenset(
    {"partition-key-name", "sort-key-name", "exclude-columns", "attribute-mappings", "copy-columns",
     "condition-expression"}
)
CONDITION_KEYS = frozenset({"expression", "expression-attribute-values", "expression-attribute-names"})
_VALUE_NAME = re.compile(r":[A-Za-z0-9_]+")
_NAME_NAME = re.compile(r"#[A-Za-z0-9_]+")
ATTRIBUTE_KEYS = frozenset({"target-attribute-name", "attribute-type", "attribute-sub-type", "value"})
_SINGLE = re.compile(r"^\$\{([^}:]+)\}$")
_PIECE = re.compile(r"(\$\{[^}]*\})|([{}])")
DOC_ATTRIBUTE = "_doc"
"""DMS's name for the map attribute of map-record-to-document."""


@dataclass(frozen=True)
class SourceColumn:
    """A column of the source table as a DMS rule sees it."""

    column: str
    """The name the records carry."""
    attribute: str
    """The attribute it becomes when copied (after DMS column transformation rules)."""
    number: bool = False
    """Whether the column holds numbers (a key attribute read from it is a DynamoDB number)."""


def dms_template(text: str) -> str:
    """A DMS value as a template: only `${column}` names a column; every other brace is literal
    (`{"Name":"${FirstName}"}` is JSON text), so it is doubled for the template language."""
    return _PIECE.sub(lambda match: match.group(1) or match.group(2) * 2, text)


def _like(node: Node, value: Any, path: str | None = None) -> Node:
    return Node(value, node.file, node.line, node.column, path or node.path)


def _column(node: Node, **options: Any) -> Node:
    return _like(
        node,
        {
            key: value if isinstance(value, Node) else _like(node, value, f"{node.path}.{key}")
            for key, value in options.items()
        },
    )


def _scalar(node: Node, value_node: Node, sub_type: str) -> Node:
    text = value_node.expect_str("value")
    number = sub_type == "number"
    single = _SINGLE.match(text)
    if single:
        return _column(
            node, **{"from": _like(value_node, single.group(1))}, type="decimal" if number else "string"
        )
    template = _like(value_node, dms_template(text))
    return _column(node, template=template, type="decimal" if number else "string")


def _document(node: Node) -> Node:
    """A `{M: {...}}` DynamoDB-JSON document (or plain nested YAML) as a `map:` tree."""
    value = node.value
    if isinstance(value, dict) and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "M":
            return _like(
                node, {name: _document(child) for name, child in inner.expect_dict("an M map").items()}
            )
        if tag in ("S", "N"):
            return _scalar(node, inner, "number" if tag == "N" else "string")
        if tag in ("L", "SS", "NS", "B", "BOOL", "NULL"):
            raise node.error(
                f"DynamoDB-JSON `{tag}` is not supported in attribute mappings",
                "build lists with a column `{from: <array>, type: list}`",
            )
    if isinstance(value, str):
        return _scalar(node, node, "string")
    if isinstance(value, dict):
        return _like(node, {name: _document(child) for name, child in value.items()})
    raise node.error(
        "a document attribute is a map of `${column}` values", 'write e.g. `{M: {Phone: {S: "${Phone}"}}}`'
    )


def _condition(node: Node) -> Node:
    """A DMS `condition-expression` as {expression, names: {#n: attribute}, values: {:v: column}}:
    every placeholder the expression uses must be defined, as DynamoDB refuses it otherwise."""
    options = node.check_keys(CONDITION_KEYS, "condition-expression")
    if "expression" not in options:
        raise node.error(
            "the condition-expression has no `expression`", 'add "expression": "attribute_not_exists(id)"'
        )
    expression = options["expression"].expect_str("expression")
    pairs: dict[str, dict[str, Node]] = {"expression-attribute-names": {}, "expression-attribute-values": {}}
    for kind, found in pairs.items():
        for item in options[kind].expect_list(kind) if kind in options else []:
            entry = item.check_keys(frozenset({"name", "value"}), f"an entry of {kind}")
            if "name" not in entry or "value" not in entry:
                raise item.error(
                    f"an entry of {kind} has a `name` and a `value`", 'write {"name": ..., "value": ...}'
                )
            found[entry["name"].expect_str("name")] = entry["value"]
    names, values = pairs["expression-attribute-names"], pairs["expression-attribute-values"]
    for pattern, defined, kind in ((_NAME_NAME, names, "names"), (_VALUE_NAME, values, "values")):
        undefined = sorted(set(pattern.findall(expression)) - set(defined))
        if undefined:
            raise options["expression"].error(
                f"`{undefined[0]}` is not defined in expression-attribute-{kind}",
                f"add {{\"name\": \"{undefined[0]}\", \"value\": ...}}",
            )
    columns = {}
    for placeholder, value in values.items():
        tagged = value.value
        if not (isinstance(tagged, dict) and len(tagged) == 1 and next(iter(tagged)) in ("S", "N")):
            raise value.error(
                'a condition value is {"S": ...} or {"N": ...}', 'write {"N": "${version}"}'
            )
        ((tag, inner),) = tagged.items()
        kind = "decimal" if tag == "N" else "string"
        columns[placeholder] = (
            _scalar(value, inner, "number" if tag == "N" else "string")
            if "${" in str(inner.value)
            else _column(value, const=inner, type=kind)
        )
    return _like(node, {
        "expression": options["expression"],
        "names": _like(
            node, {name: _like(item, item.expect_str("an attribute name")) for name, item in names.items()}
        ),
        "values": _like(node, columns),
    })


def translate_dms(node: Node, columns: Sequence[SourceColumn] | None = None) -> dict[str, Node]:
    """Output options (table, key, columns, nulls) equivalent to one DMS object-mapping rule.

    `columns`: the source table's columns when known; then the rule copies (or puts in `_doc`)
    every column it does not exclude, as DMS does."""
    rule, action = _object_mapping(node)
    parameters = rule["mapping-parameters"].check_keys(PARAMETER_KEYS, "mapping-parameters")
    if "partition-key-name" not in parameters:
        raise rule["mapping-parameters"].error("no `partition-key-name`", "name the partition key attribute")
    key_nodes = [parameters["partition-key-name"]] + (
        [parameters["sort-key-name"]] if "sort-key-name" in parameters else []
    )
    key = [item.expect_str("a key attribute name") for item in key_nodes]
    columns_out = dict(
        _attribute_column(mapping)
        for mapping in (
            parameters["attribute-mappings"].expect_list("attribute-mappings")
            if "attribute-mappings" in parameters
            else []
        )
    )
    by_attribute = {column.attribute: column for column in columns or ()}
    for key_name, key_node in zip(key, key_nodes, strict=True):
        if key_name not in columns_out:
            source = by_attribute.get(key_name)
            read = source.column if source else key_name
            kind = "decimal" if source and source.number else "string"
            columns_out[key_name] = _column(key_node, **{"from": _like(key_node, read)}, type=kind)
    _add_copied_columns(node, action, parameters, columns, columns_out)
    extra = {"condition": _condition(parameters["condition-expression"])} if (
        "condition-expression" in parameters) else {}
    return {
        **extra,
        "table": rule["target-table-name"],
        "key": _like(key_nodes[0], [_like(item, item.value) for item in key_nodes]),
        "columns": _like(node, columns_out, f"{node.path}.mapping-parameters"),
        "nulls": _like(node, "omit"),
    }


def _object_mapping(node: Node) -> tuple[dict[str, Node], str]:
    """The rule's options and its rule-action, once the rule is an object-mapping rule with a target
    table and mapping parameters."""
    if isinstance(node.value, dict) and "rules" in node.value:
        raise node.error(
            "a whole DMS table-mapping document is not one rule",
            "give the document to the source in the job file: `dms: {mapping: <file>.json, target: <name>}`",
        )
    rule = node.check_keys(DMS_KEYS, "a DMS rule")
    if "rule-type" in rule and rule["rule-type"].value != "object-mapping":
        raise rule["rule-type"].error(
            "only object-mapping rules describe outputs", "write `rule-type: object-mapping`"
        )
    action_node = rule.get("rule-action")
    action = action_node.value if action_node else None
    if action not in ("map-record-to-record", "map-record-to-document"):
        raise (action_node or node).error(
            "`rule-action` must be map-record-to-record or map-record-to-document",
            "write `rule-action: map-record-to-record`",
        )
    if "target-table-name" not in rule:
        raise node.error("the rule has no `target-table-name`", "add the DynamoDB table name")
    if "mapping-parameters" not in rule:
        raise node.error("the rule has no `mapping-parameters`", "add at least `partition-key-name`")
    return rule, action


def _attribute_column(mapping: Node) -> tuple[str, Node]:
    """(attribute name, column options) of one entry of `attribute-mappings`."""
    options = mapping.check_keys(ATTRIBUTE_KEYS, "an attribute mapping")
    for needed in ("target-attribute-name", "attribute-type", "value"):
        if needed not in options:
            raise mapping.error(f"the attribute mapping has no `{needed}`", "see docs/mapping.md (DMS)")
    name = options["target-attribute-name"].expect_str("target-attribute-name")
    kind = options["attribute-type"].value
    sub_type = options["attribute-sub-type"].value if "attribute-sub-type" in options else "string"
    value = options["value"]
    if kind == "scalar":
        if sub_type not in ("string", "number"):
            raise options["attribute-sub-type"].error(
                "scalar sub-types are string and number", "write `attribute-sub-type: string`"
            )
        return name, _scalar(mapping, value, sub_type)
    if kind == "document":
        if sub_type != "dynamodb-map":
            raise mapping.error(
                "document sub-type must be dynamodb-map", "write `attribute-sub-type: dynamodb-map`"
            )
        document = _document(value)
        if not isinstance(document.value, dict) or any(
            key in document.value for key in ("from", "template")
        ):
            raise value.error(
                "a dynamodb-map value is a map", 'write `value: {M: {Name: {S: "${Name}"}}}`'
            )
        return name, _column(mapping, map=document)
    raise options["attribute-type"].error(
        "attribute-type is scalar or document", "write `attribute-type: scalar`"
    )


def _add_copied_columns(
    node: Node, action: str, parameters: dict[str, Node], columns: Sequence[SourceColumn] | None,
    columns_out: dict[str, Node],
) -> None:
    """The columns DMS copies besides the mapped attributes: each column not excluded as an attribute
    (map-record-to-record), or all of them in `_doc` (map-record-to-document)."""
    excluded = (
        [
            item.expect_str("a column name")
            for item in parameters["exclude-columns"].expect_list("exclude-columns")
        ]
        if "exclude-columns" in parameters
        else []
    )
    copy_types = (
        parameters["copy-columns"].expect_dict("copy-columns") if "copy-columns" in parameters else {}
    )
    if action == "map-record-to-record":
        if columns is None:
            copies = [(name, name, type_node) for name, type_node in copy_types.items()]
        else:
            copies = [
                (column.attribute, column.column, copy_types.get(column.column, _like(node, "json")))
                for column in columns
            ]
        for attribute, read, type_node in copies:
            if read in excluded or attribute in columns_out:
                continue
            columns_out[attribute] = _column(type_node, **{"from": _like(type_node, read)}, type=type_node)
        return
    if "copy-columns" in parameters:
        raise parameters["copy-columns"].error(
            "copy-columns belongs to map-record-to-record",
            "map-record-to-document keeps every column not excluded in _doc",
        )
    if columns is None:
        columns_out[DOC_ATTRIBUTE] = _column(
            node, rest=_like(node, "all"), exclude=_like(node, [_like(node, name) for name in excluded])
        )
        return
    members = {
        column.attribute: _column(node, **{"from": _like(node, column.column)}, type="json")
        for column in columns
        if column.column not in excluded
    }
    if members:
        columns_out[DOC_ATTRIBUTE] = _column(node, map=_like(node, members))
