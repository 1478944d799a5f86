"""AWS DMS object-mapping rules, written in YAML, translated into ordinary outputs.

The rule keys are DMS's own (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.DynamoDB.html,
"Using object mapping to migrate data to DynamoDB"): `rule-action` map-record-to-record or
map-record-to-document, `target-table-name`, and `mapping-parameters` with partition-key-name,
sort-key-name, exclude-columns and attribute-mappings (scalar `${column}` templates and
`dynamodb-map` documents). DMS copies a relational table's remaining columns implicitly; a
mapping's columns must be known before data moves, so map-record-to-record lists them under
`copy-columns` (name: type). Every translated node keeps its place in the file for errors.
"""

from __future__ import annotations

import re
from typing import Any

from etl.mapping.located import Node

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
    {"partition-key-name", "sort-key-name", "exclude-columns", "attribute-mappings", "copy-columns"}
)
ATTRIBUTE_KEYS = frozenset({"target-attribute-name", "attribute-type", "attribute-sub-type", "value"})
_SINGLE = re.compile(r"^\$\{([^}:]+)\}$")
_FIELD = re.compile(r"\$\{([^}:]+)\}")
DOC_ATTRIBUTE = "_doc"
"""DMS's name for the map attribute of map-record-to-document."""


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
    return _column(node, template=value_node, type="decimal" if number else "string")


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


def translate_dms(node: Node) -> dict[str, Node]:
    """Output options (table, key, columns) equivalent to one DMS object-mapping rule."""
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
    parameters = rule["mapping-parameters"].check_keys(PARAMETER_KEYS, "mapping-parameters")
    if "partition-key-name" not in parameters:
        raise rule["mapping-parameters"].error("no `partition-key-name`", "name the partition key attribute")
    key_nodes = [parameters["partition-key-name"]] + (
        [parameters["sort-key-name"]] if "sort-key-name" in parameters else []
    )
    key = [item.expect_str("a key attribute name") for item in key_nodes]
    columns: dict[str, Node] = {}
    used: set[str] = set()
    for mapping in (
        parameters["attribute-mappings"].expect_list("attribute-mappings")
        if "attribute-mappings" in parameters
        else []
    ):
        options = mapping.check_keys(ATTRIBUTE_KEYS, "an attribute mapping")
        for needed in ("target-attribute-name", "attribute-type", "value"):
            if needed not in options:
                raise mapping.error(f"the attribute mapping has no `{needed}`", "see docs/mapping.md (DMS)")
        name = options["target-attribute-name"].expect_str("target-attribute-name")
        kind = options["attribute-type"].value
        sub_type = options["attribute-sub-type"].value if "attribute-sub-type" in options else "string"
        value = options["value"]
        used.update(_FIELD.findall(str(value.plain())))
        if kind == "scalar":
            if sub_type not in ("string", "number"):
                raise options["attribute-sub-type"].error(
                    "scalar sub-types are string and number", "write `attribute-sub-type: string`"
                )
            columns[name] = _scalar(mapping, value, sub_type)
        elif kind == "document":
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
            columns[name] = _column(mapping, map=document)
        else:
            raise options["attribute-type"].error(
                "attribute-type is scalar or document", "write `attribute-type: scalar`"
            )
    for key_name, key_node in zip(key, key_nodes, strict=True):
        if key_name not in columns:
            columns[key_name] = _column(key_node, **{"from": _like(key_node, key_name)}, type="string")
            used.add(key_name)
    excluded = (
        [
            item.expect_str("a column name")
            for item in parameters["exclude-columns"].expect_list("exclude-columns")
        ]
        if "exclude-columns" in parameters
        else []
    )
    if action == "map-record-to-record":
        for name, type_node in (
            parameters["copy-columns"].expect_dict("copy-columns").items()
            if "copy-columns" in parameters
            else []
        ):
            if name in excluded or name in columns:
                continue
            columns[name] = _column(type_node, **{"from": _like(type_node, name)}, type=type_node)
    else:
        if "copy-columns" in parameters:
            raise parameters["copy-columns"].error(
                "copy-columns belongs to map-record-to-record",
                "map-record-to-document keeps the remaining columns in _doc",
            )
        columns[DOC_ATTRIBUTE] = _column(
            node, rest=True, exclude=_like(node, [_like(node, name) for name in sorted(used | set(excluded))])
        )
    return {
        "table": rule["target-table-name"],
        "key": _like(key_nodes[0], [_like(item, item.value) for item in key_nodes]),
        "columns": _like(node, columns, f"{node.path}.mapping-parameters"),
    }
