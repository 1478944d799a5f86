"""A whole AWS DMS table-mapping document (`{"rules": [...]}`) as the mappings of a relational source.

The document is read as DMS reads it (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.html):
  * selection rules pick the tables: a table is migrated when an `include` (or `explicit`) rule's
    object-locator matches it and no `exclude` rule does; `%` in a schema or table name matches any
    run of characters. An include rule that matches no table of the source is an error.
  * transformation rules that etl can honour apply: `remove-column`, `rename`, `convert-lowercase`,
    `convert-uppercase`, `add-prefix`, `remove-prefix`, `replace-prefix`, `add-suffix`,
    `remove-suffix`, `replace-suffix` on tables (the default target table name) and columns (the
    attribute a copied column becomes), and `define-primary-key` (the columns that identify a row
    of a table without a primary key). Every other rule is refused with the reason.
  * object-mapping rules build the items (`etl.mapping.dms.translate_dms`), with the table's
    columns from the source's catalogue, so map-record-to-record copies every column not excluded
    and map-record-to-document puts every column not excluded in `_doc`. A selected table without
    an object-mapping rule is copied whole into a table of its (transformed) name, keyed by its
    primary key, as DMS does.

The engine lists the source's tables and columns; this module knows nothing of any database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from etl.errors import MappingError
from etl.located import Node, load_nodes
from etl.mapping.dms import SourceColumn, translate_dms
from etl.mapping.spec import MappingSpec, spec_from_nodes

RULE_TYPES = ("selection", "transformation", "object-mapping")
SELECTION_KEYS = frozenset(
    {"rule-type", "rule-id", "rule-name", "rule-action", "object-locator", "load-order", "filters"}
)
TRANSFORMATION_KEYS = frozenset(
    {
        "rule-type",
        "rule-id",
        "rule-name",
        "rule-action",
        "rule-target",
        "object-locator",
        "value",
        "old-value",
        "primary-key-def",
        "load-order",
    }
)
LOCATOR_KEYS = frozenset({"schema-name", "table-name", "column-name", "table-type"})
RENAMES = (
    "rename",
    "convert-lowercase",
    "convert-uppercase",
    "add-prefix",
    "remove-prefix",
    "replace-prefix",
    "add-suffix",
    "remove-suffix",
    "replace-suffix",
)
_REFUSED_TARGETS = {
    "schema": "DynamoDB tables have no schema, so a schema rule would change nothing; remove it",
    "table-tablespace": "tablespaces do not exist in DynamoDB; remove the rule",
    "index-tablespace": "tablespaces do not exist in DynamoDB; remove the rule",
}


@dataclass(frozen=True)
class TableColumns:
    """What the source's catalogue says of one selected table."""

    schema: str
    table: str
    columns: tuple[tuple[str, bool], ...]
    """(name, holds numbers) of every column, in table order."""
    key: tuple[str, ...]
    """The columns that identify a row (primary key, `define-primary-key`, or the job's `key:`)."""


def _like(node: Node, value: Any, path: str | None = None) -> Node:
    return Node(value, node.file, node.line, node.column, path or node.path)


def _matches(pattern: str, name: str) -> bool:
    """DMS names in object-locators: `%` matches any run of characters; the rest is literal."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("%")), name) is not None


def _table_type(rule: dict[str, Node]) -> str:
    """A selection rule's `table-type`: `table` unless it says `view` or `all`."""
    locator = rule["object-locator"].value
    return str(locator["table-type"].value) if "table-type" in locator else "table"


def _renamed(action: str, rule: dict[str, Node], name: str) -> str:
    value = rule["value"].value if "value" in rule else None
    old = rule["old-value"].value if "old-value" in rule else None
    if action == "rename":
        return str(value)
    if action == "convert-lowercase":
        return name.lower()
    if action == "convert-uppercase":
        return name.upper()
    if action == "add-prefix":
        return f"{value}{name}"
    if action == "add-suffix":
        return f"{name}{value}"
    if action == "remove-prefix":
        return name[len(value) :] if name.startswith(value) else name
    if action == "remove-suffix":
        return name[: -len(value)] if value and name.endswith(value) else name
    if action == "replace-prefix":
        return f"{value}{name[len(old) :]}" if name.startswith(old) else name
    return f"{name[: -len(old)]}{value}" if old and name.endswith(old) else name  # replace-suffix


class DmsDocument:
    """A DMS table-mapping document, checked rule by rule when it is read."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise MappingError(
                f"{file}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}",
                hint='a DMS table mapping is one JSON document: {"rules": [...]}',
            ) from None
        # JSON strings cannot hold a raw tab, so tabs are layout only: spaces keep every position
        root = load_nodes(text.replace("\t", " "), file)
        top = root.check_keys(frozenset({"rules"}), "a DMS table-mapping document")
        if "rules" not in top:
            raise root.error("the document has no `rules`", 'write {"rules": [...]}')
        self.selections: list[dict[str, Node]] = []
        self.transformations: list[dict[str, Node]] = []
        self.objects: list[Node] = []
        for rule_node in top["rules"].expect_list("rules"):
            self._add(rule_node)
        if not any(rule["rule-action"].value != "exclude" for rule in self.selections):
            raise top["rules"].error(
                "no selection rule includes a table",
                'add {"rule-type": "selection", "rule-action": "include", ...}',
            )

    def _add(self, node: Node) -> None:
        rule = node.expect_dict("a rule")
        kind = rule.get("rule-type")
        if kind is None or kind.value not in RULE_TYPES:
            raise (kind or node).error(
                f"rule-type {kind.value if kind else None!r} is not one etl can apply"
                + (
                    " (table-settings: etl splits tables with `partitions:` in the job file)"
                    if kind is not None and kind.value == "table-settings"
                    else ""
                ),
                f"rule types: {', '.join(RULE_TYPES)}",
            )
        if kind.value == "object-mapping":
            self.objects.append(node)
            return
        rule = node.check_keys(
            SELECTION_KEYS if kind.value == "selection" else TRANSFORMATION_KEYS, f"a {kind.value} rule"
        )
        if "object-locator" not in rule:
            raise node.error(
                "the rule has no `object-locator`", 'add {"schema-name": ..., "table-name": ...}'
            )
        locator = rule["object-locator"].check_keys(LOCATOR_KEYS, "object-locator")
        for name in ("schema-name", "table-name"):
            if name not in locator:
                raise rule["object-locator"].error(
                    f"the object-locator has no `{name}`", "use % for any name"
                )
        action = rule["rule-action"].value if "rule-action" in rule else None
        if kind.value == "selection":
            if action not in ("include", "exclude", "explicit"):
                raise (rule.get("rule-action") or node).error(
                    "a selection rule's rule-action is include, exclude or explicit", 'write "include"'
                )
            if "filters" in rule and rule["filters"].value:
                raise rule["filters"].error(
                    "selection filters are not applied by etl",
                    "remove them and give the table a `where:` in the job file, or filter in a view",
                )
            if _table_type(rule) not in ("table", "view", "all"):
                raise locator["table-type"].error(
                    "table-type is table, view or all", 'write "table-type": "all"'
                )
            self.selections.append(rule)
            return
        self._check_transformation(node, rule, action)
        self.transformations.append(rule)

    def _check_transformation(self, node: Node, rule: dict[str, Node], action: Any) -> None:
        target = rule["rule-target"].value if "rule-target" in rule else None
        if target in _REFUSED_TARGETS:
            raise rule["rule-target"].error(
                f"rule-target `{target}` cannot be honoured", _REFUSED_TARGETS[target]
            )
        if target not in ("table", "column"):
            raise (rule.get("rule-target") or node).error(
                "rule-target must be table or column", 'write "rule-target": "column"'
            )
        if action == "define-primary-key":
            if target != "table" or "primary-key-def" not in rule:
                raise node.error(
                    "define-primary-key needs rule-target table and a primary-key-def",
                    'add "primary-key-def": {"name": "pk", "columns": ["id"]}',
                )
            definition = rule["primary-key-def"].check_keys(
                frozenset({"name", "columns", "origin"}), "primary-key-def"
            )
            if "columns" not in definition or not definition["columns"].expect_list("columns"):
                raise rule["primary-key-def"].error(
                    "primary-key-def lists no columns", 'add "columns": ["id"]'
                )
            return
        if action == "remove-column" and target == "column":
            return
        if action not in RENAMES:
            raise (rule.get("rule-action") or node).error(
                f"transformation `{action}` cannot be honoured by etl",
                "etl applies remove-column, rename, convert-lowercase/uppercase, add/remove/replace-prefix "
                "and -suffix, and define-primary-key; compute other values with an object-mapping rule",
            )
        needs = {
            "rename": ("value",),
            "add-prefix": ("value",),
            "add-suffix": ("value",),
            "remove-prefix": ("value",),
            "remove-suffix": ("value",),
            "replace-prefix": ("value", "old-value"),
            "replace-suffix": ("value", "old-value"),
        }
        for key in needs.get(action, ()):
            if key not in rule or not isinstance(rule[key].value, str) or not rule[key].value:
                raise node.error(f"`{action}` needs a `{key}`", f'add "{key}": "..."')
        if target == "column" and "column-name" not in rule["object-locator"].value:
            raise rule["object-locator"].error(
                "a column rule's object-locator has no `column-name`",
                'add "column-name": "%" for every column',
            )

    # -- what the engine asks --------------------------------------------------------------

    def select(self, tables: Sequence[tuple[str, str, bool]]) -> list[tuple[str, str]]:
        """The (schema, table) pairs the selection rules migrate, in source order, from the source's
        (schema, table, is a view) list; MappingError when an include rule matches none of them.
        A selection rule's `table-type` is `table` (the default), `view` or `all`."""
        includes = [rule for rule in self.selections if rule["rule-action"].value != "exclude"]
        excludes = [rule for rule in self.selections if rule["rule-action"].value == "exclude"]

        def picked(rule: dict[str, Node], schema: str, table: str, view: bool) -> bool:
            kinds = ("all", "view" if view else "table")
            return self._locates(rule, schema, table) and _table_type(rule) in kinds

        for rule in includes:
            if not any(picked(rule, *entry) for entry in tables):
                locator = rule["object-locator"].plain()
                shown = ", ".join(f"{s}.{t}" for s, t, _ in tables[:20]) or "none"
                raise rule["object-locator"].error(
                    f"selection rule matches no {_table_type(rule).replace('all', 'table or view')} of the"
                    f" source (schema-name {locator['schema-name']!r}, table-name {locator['table-name']!r})",
                    f"names match exactly, `%` matches any run of characters; tables and views: {shown}",
                )
        return [
            (schema, table)
            for schema, table, view in tables
            if any(picked(rule, schema, table, view) for rule in includes)
            and not any(picked(rule, schema, table, view) for rule in excludes)
        ]

    @staticmethod
    def _locates(rule: dict[str, Node], schema: str, table: str) -> bool:
        locator = rule["object-locator"].value
        if rule.get("rule-action") is not None and rule["rule-action"].value == "explicit":
            return locator["schema-name"].value == schema and locator["table-name"].value == table
        return _matches(str(locator["schema-name"].value), schema) and _matches(
            str(locator["table-name"].value), table
        )

    def primary_key(self, schema: str, table: str) -> list[str] | None:
        """The columns of a `define-primary-key` rule for this table, if one applies."""
        for rule in self.transformations:
            if rule["rule-action"].value == "define-primary-key" and self._locates(rule, schema, table):
                return [
                    item.expect_str("a column") for item in rule["primary-key-def"].value["columns"].value
                ]
        return None

    def _columns(self, schema: str, table: str, columns: Sequence[tuple[str, bool]]) -> list[SourceColumn]:
        """The columns left after remove-column rules, each with the attribute name the rename rules
        give it (applied in document order, each to the result of the previous)."""
        kept = []
        for name, number in columns:
            attribute, removed = name, False
            for rule in self.transformations:
                locator = rule["object-locator"].value
                if rule["rule-target"].value != "column" or not self._locates(rule, schema, table):
                    continue
                if not _matches(str(locator["column-name"].value), name):  # locators name source columns
                    continue
                if rule["rule-action"].value == "remove-column":
                    removed = True
                    break
                attribute = _renamed(rule["rule-action"].value, rule, attribute)
            if not removed:
                kept.append(SourceColumn(name, attribute, number))
        return kept

    def _table_name(self, schema: str, table: str) -> str:
        name = table
        for rule in self.transformations:
            action = rule["rule-action"].value
            if (
                rule["rule-target"].value == "table"
                and action in RENAMES
                and self._locates(rule, schema, table)  # locators name source tables
            ):
                name = _renamed(action, rule, name)
        return name

    def spec(self, table: TableColumns, target: str) -> MappingSpec:
        """The mapping of one selected table, writing DynamoDB target `target`."""
        columns = self._columns(table.schema, table.table, table.columns)
        rules = [rule for rule in self.objects if self._object_locates(rule, table)]
        anchor = next(
            r["object-locator"] for r in self.selections if self._locates(r, table.schema, table.table)
        )
        outputs = [self._output(rule, columns, target) for rule in rules] or [
            self._default_output(anchor, table, columns, target)
        ]
        listed = self._listed(rules, table, columns)
        root = _like(
            anchor,
            {
                "targets": _like(anchor, {target: _like(anchor, "dynamodb")}, "targets"),
                "source": _like(
                    anchor,
                    {
                        "key": _like(anchor, [_like(anchor, k) for k in table.key]),
                        "ignore": _like(anchor, [_like(anchor, n) for n in listed]),
                    },
                    "source",
                ),
                "outputs": _like(anchor, outputs, "rules"),
            },
            "rules",
        )
        return spec_from_nodes(root, self.file)

    @staticmethod
    def _listed(rules: list[Node], table: TableColumns, columns: list[SourceColumn]) -> list[str]:
        """Columns the document leaves out on purpose: removed by a transformation or excluded."""
        kept = {column.column for column in columns}
        listed = [name for name, _ in table.columns if name not in kept]
        for rule in rules:
            parameters = rule.value.get("mapping-parameters")
            excluded = parameters.value.get("exclude-columns") if parameters is not None else None
            if excluded is not None and isinstance(excluded.value, list):
                listed += [str(item.value) for item in excluded.value]
        return listed

    def _object_locates(self, node: Node, table: TableColumns) -> bool:
        rule = node.expect_dict("an object-mapping rule")
        if "object-locator" not in rule:
            raise node.error(
                "the object-mapping rule has no `object-locator`",
                'add {"schema-name": ..., "table-name": ...}',
            )
        locator = rule["object-locator"].check_keys(LOCATOR_KEYS, "object-locator")
        return all(name in locator for name in ("schema-name", "table-name")) and self._locates(
            {"object-locator": rule["object-locator"]}, table.schema, table.table
        )

    @staticmethod
    def _output(rule: Node, columns: list[SourceColumn], target: str) -> Node:
        options = translate_dms(rule, columns)
        return _like(rule, {"target": _like(rule, target), **options})

    def _default_output(
        self, anchor: Node, table: TableColumns, columns: list[SourceColumn], target: str
    ) -> Node:
        """DMS without an object-mapping rule: the table copied whole, keyed by its primary key."""
        attributes = {column.column: column.attribute for column in columns}
        if not 1 <= len(table.key) <= 2 or any(name not in attributes for name in table.key):
            raise anchor.error(
                f"table {table.schema}.{table.table} has no object-mapping rule, and its key "
                f"({', '.join(table.key) or 'none'}) cannot be a DynamoDB key of one or two attributes",
                "add an object-mapping rule naming partition-key-name (and sort-key-name) for it",
            )
        parameters: dict[str, Node] = {"partition-key-name": _like(anchor, attributes[table.key[0]])}
        if len(table.key) == 2:
            parameters["sort-key-name"] = _like(anchor, attributes[table.key[1]])
        rule = _like(
            anchor,
            {
                "rule-action": _like(anchor, "map-record-to-record"),
                "target-table-name": _like(anchor, self._table_name(table.schema, table.table)),
                "mapping-parameters": _like(anchor, parameters),
            },
        )
        return self._output(rule, columns, target)
