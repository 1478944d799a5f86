"""Parse and validate a mapping file into a MappingSpec, before any data moves.

Every problem raises MappingError with file:line:column, the path in the document and what to
write instead. Expressions and templates are parsed here (once); compile.py only builds closures.
See docs/mapping.md for the language.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any, Literal, cast, get_args

from etl.coltypes import ColumnType, parse_type
from etl.errors import MappingError
from etl.located import Node, load_nodes, suggest
from etl.mapping.dms import translate_dms
from etl.mapping.expr import ExprError, compile_expr, field_paths, parse_expr
from etl.mapping.paths import MISSING, Path, PathSyntaxError, parse_path
from etl.mapping.pii import MASK_MAX_KEEP, PiiRule, SecretKey, drop, hmac_sha256, mask, redact, year_only
from etl.mapping.template import Template, TemplateError, parse_template
from etl.mapping.types import ALL_TYPE_WORDS, CastError, make_cast, mapping_type
from etl.records import WriteCondition
from etl.sinks import SINK_TYPES, TargetKind, engines_with, rules_for
from etl.sinks.base import TargetRules

Resolve = Callable[[str, str], str]

TARGET_KINDS = tuple(SINK_TYPES)
"""The target kinds a mapping's `targets:` may name: the sinks' registry."""
TOP_KEYS = frozenset({"version", "description", "source", "targets", "where", "pii", "outputs"})
OUTPUT_KEYS = frozenset(
    {"target", "table", "key", "columns", "explode", "parent", "where", "description", "dms", "nulls",
     "condition"}
)
NULLS = ("null", "omit")
"""What a null value of a non-key column becomes: a NULL attribute (`null`, the default) or no
attribute at all (`omit`, what AWS DMS does on DynamoDB targets)."""
ColumnKind = Literal["from", "const", "template", "expr", "map", "rest"]
"""Where a column's value comes from (a `flatten` column becomes one `from` column per field)."""
SOURCE_KINDS = (*get_args(ColumnKind), "flatten")
COLUMN_OPTIONS = frozenset(
    {"type", "default", "required", "optional", "round", "tz", "items", "prefix", "fields", "exclude"}
)
COLUMN_KEYS = frozenset(SOURCE_KINDS) | COLUMN_OPTIONS
PII_KINDS = ("hmac", "mask", "redact", "year", "drop")
_INTERPOLATION = re.compile(r"\$\{(env|secret):[^}]+\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_#$.-]{0,254}$")


@dataclass
class ColumnSpec:
    """One column of an output: where its value comes from, and its type."""

    name: str
    kind: ColumnKind
    type: ColumnType
    node: Node
    path: Path | None = None
    const: Any = None
    template: Template | None = None
    expr: Any = None
    map_tree: dict[str, Any] | None = None
    """For `map`: name -> ColumnSpec or nested dict."""
    exclude: frozenset[str] = frozenset()
    rest_all: bool = False
    """`rest: all`: every field not excluded, also those other columns read (DMS's `_doc`)."""
    default: Any = MISSING
    required: bool = False
    rounding: str | None = None
    tz: str | None = None
    items: ColumnType | None = None
    pii: str | None = None
    optional: bool = False
    """`optional: true`: the source may lack this column's paths in every record (no check fails)."""
    at: Node | None = None
    """Where the column's source (the `from:` path, template, expression) is written; errors about
    the source paths point here."""

    @property
    def where(self) -> str:
        """file:line:column of the column's source text."""
        return (self.at or self.node).where

    def paths(self) -> list[Path]:
        """Every source path this column reads."""
        if self.path is not None:
            return [self.path]
        if self.template is not None:
            return self.template.paths
        if self.expr is not None:
            return field_paths(self.expr)
        if self.map_tree is not None:
            return [path for child in _walk_tree(self.map_tree) for path in child.paths()]
        return []


def _walk_tree(tree: dict[str, Any]) -> list[ColumnSpec]:
    found: list[ColumnSpec] = []
    for value in tree.values():
        found.extend(_walk_tree(value) if isinstance(value, dict) else [value])
    return found


@dataclass
class OutputSpec:
    """Rows of one target table made from each record (or from each element of an exploded array)."""

    target: str
    target_kind: TargetKind
    table: str
    key: tuple[str, ...]
    columns: list[ColumnSpec]
    node: Node
    explode: tuple[Path, ...] = ()
    """Array levels, each relative to the previous one's element (`invoices[].lines[]` -> 2 levels)."""
    explode_text: str | None = None
    parent: str | None = None
    where: Any = None
    key_declared: bool = True
    dms_copies: bool = False
    """Made from a DMS map-record-to-record rule: DMS would copy every column it does not exclude."""
    dms_excluded: frozenset[str] = frozenset()
    """The `exclude-columns` of the DMS rule this output was made from."""
    condition: WriteCondition | None = None
    """A DynamoDB condition every write must meet (a DMS `condition-expression`)."""
    condition_values: list[ColumnSpec] = field(default_factory=list)
    """The condition's value placeholders (`:v`) as columns: each row carries them, not as attributes."""
    nulls: str = "null"
    """`null`: a null value is written as NULL; `omit`: the attribute is left out of the item (a null
    inside a template or a map leaves out that attribute or member)."""

    @property
    def rules(self) -> TargetRules:
        """What the output's target kind allows (its sink module's `RULES`)."""
        return rules_for(self.target_kind)


@dataclass
class MappingSpec:
    """A validated mapping file."""

    file: str
    targets: dict[str, TargetKind]
    outputs: list[OutputSpec]
    source_key: list[str] = field(default_factory=list)
    where: Any = None
    pii: list[PiiRule] = field(default_factory=list)
    description: str | None = None
    root: Node | None = field(default=None, repr=False, compare=False)
    """The file's top node: where `where:`, `pii:` and `source.key` are written."""
    ignored: tuple[str, ...] = ()
    """`source.ignore`: source columns no output reads on purpose."""


def load_mapping(path: str | FilePath, *, resolve: Resolve | None = None) -> MappingSpec:
    """Read and validate a mapping file. `resolve(text, where)` interpolates `${env:..}`/`${secret:..}`."""
    file = str(path)
    try:
        text = FilePath(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MappingError(f"{file}: the mapping file is not UTF-8 text (byte offset {exc.start})",
                           hint="save the file as UTF-8") from None
    except IsADirectoryError:
        raise MappingError(
            f"{file}: the mapping path is a directory, not a mapping file",
            hint="check the `mapping:` path in the job file: it names a YAML file (relative to the job file)",
        ) from None
    except OSError as exc:
        raise MappingError(
            f"{file}: cannot read the mapping file ({exc.strerror})",
            hint="check the `mapping:` path in the job file (relative to the job file)",
        ) from None
    return parse_mapping(text, file, resolve=resolve)


def parse_mapping(text: str, file: str = "<mapping>", *, resolve: Resolve | None = None) -> MappingSpec:
    """Validate mapping text (what load_mapping does after reading the file)."""
    return spec_from_nodes(load_nodes(text, file), file, resolve=resolve)


def spec_from_nodes(root: Node, file: str, *, resolve: Resolve | None = None) -> MappingSpec:
    """Validate a mapping document already read into located nodes (a YAML file, or outputs made
    from an AWS DMS document by `etl.mapping.dms_document`)."""
    if isinstance(root.value, dict) and "rules" in root.value:
        raise root.error(
            "this is an AWS DMS table-mapping document, not a mapping file",
            "give it to the source in the job file: `dms: {mapping: <file>.json, target: <DynamoDB target>}`",
        )
    top = root.check_keys(TOP_KEYS, "a mapping file")
    if "version" in top and top["version"].value != 1:
        raise top["version"].error("only `version: 1` exists", "write `version: 1`")
    if "targets" not in top:
        raise root.error(
            "the mapping has no `targets:`",
            "add e.g. `targets: {dynamo: dynamodb, pg: postgres}` naming each target's kind",
        )
    targets = _targets(top["targets"])
    if "outputs" not in top:
        raise root.error("the mapping has no `outputs:`", "add `outputs:` with one entry per target table")
    source_key = _source(top["source"]) if "source" in top else []
    spec = MappingSpec(
        file=file,
        targets=targets,
        outputs=[],
        source_key=source_key,
        where=_expression(top["where"], scopes=1) if "where" in top else None,
        pii=_pii(top["pii"], resolve) if "pii" in top else [],
        description=str(top["description"].value) if "description" in top else None,
        root=root,
        ignored=_ignored(top["source"]) if "source" in top else (),
    )
    outputs_node = top["outputs"]
    if not outputs_node.expect_list("outputs"):
        raise outputs_node.error("`outputs:` is empty", "add at least one output")
    for output_node in outputs_node.value:
        spec.outputs.append(_output(output_node, targets))
    _link_children(spec)
    _check_tables(spec)
    pii_kinds = {rule.steps: rule.kind for rule in spec.pii}
    for output in spec.outputs:
        for column in output.columns:
            if (
                column.path is not None
                and column.kind == "from"
                and (column.path.scope == 0 or not output.explode)
            ):
                column.pii = pii_kinds.get(column.path.steps)
    from etl.mapping.tables import table_specs

    table_specs(spec)
    return spec


def _targets(node: Node) -> dict[str, TargetKind]:
    targets: dict[str, TargetKind] = {}
    for name, kind_node in node.expect_dict("targets").items():
        kind = kind_node.value
        if kind not in TARGET_KINDS:
            near = suggest(str(kind), set(TARGET_KINDS))
            raise kind_node.error(
                f"unknown target kind `{kind}`", near or f"write {' or '.join(TARGET_KINDS)}"
            )
        targets[name] = cast(TargetKind, kind)
    if not targets:
        raise node.error("`targets:` is empty", "name each target and its kind: `pg: postgres`")
    return targets


def _ignored(node: Node) -> tuple[str, ...]:
    """`source.ignore`: columns of the source no output reads on purpose (no warning for them)."""
    options = node.expect_dict("source")
    if "ignore" not in options:
        return ()
    return tuple(item.expect_str("a column name") for item in options["ignore"].expect_list("source.ignore"))


def _source(node: Node) -> list[str]:
    options = node.check_keys(frozenset({"key", "ignore"}), "source")
    if "key" not in options:
        return []
    key_node = options["key"]
    names = (
        [key_node.value]
        if isinstance(key_node.value, str)
        else [item.expect_str("a source key field") for item in key_node.expect_list("source.key")]
    )
    for name in names:
        _path(key_node, name)
    return names


def _path(node: Node, text: Any, *, allow_every: bool = False) -> Path:
    if not isinstance(text, str):
        raise node.error(f"a source path must be text, found {type(text).__name__}", "quote it")
    try:
        return parse_path(text, allow_every=allow_every)
    except PathSyntaxError as exc:
        raise node.error(
            str(exc), "write a path like `address.city`, `phones[0].number` or `$root._id`"
        ) from None


def _expression(node: Node, *, scopes: int) -> Any:
    text = node.value
    if not isinstance(text, str):
        raise node.error("an expression must be text", 'quote it: where: "total > 0"')
    try:
        tree = parse_expr(text)
        compile_expr(tree)
    except ExprError as exc:
        raise MappingError(
            f"{node.file}:{node.line}:{node.column + node.text_offset + exc.column - 1}: {node.path}: "
            f"invalid expression: {exc}",
            hint="see the expression language in docs/mapping.md",
        ) from None
    _check_scopes(node, field_paths(tree), scopes)
    return tree


def _check_scopes(node: Node, paths: list[Path], scopes: int) -> None:
    """`$parent` is the enclosing scope, so it exists only in exploded outputs."""
    for path in paths:
        if path.scope == -2 and scopes < 2:
            raise node.error(
                f"`$parent` in `{path.text}` only exists in exploded outputs",
                "name a field of the record directly",
            )


def _secret(node: Node, text: Any, resolve: Resolve | None) -> SecretKey:
    if not isinstance(text, str) or not _INTERPOLATION.fullmatch(text.strip()):
        raise node.error(
            "an HMAC key must come from the environment or a secret store, never the file",
            'write `hmac: "${secret:name}"` or `hmac: "${env:NAME}"`',
        )
    if resolve is None:
        raise node.error(
            "this mapping needs `${...}` interpolation for its HMAC key",
            "load it through a job file, or pass resolve= to load_mapping",
        )
    value = resolve(text.strip(), f"{node.where} ({node.path})")
    if not value:
        raise node.error(
            "the HMAC key resolved to empty text", "set the variable or secret to a long random key"
        )
    return SecretKey(value.encode("utf-8"))


def _pii(node: Node, resolve: Resolve | None) -> list[PiiRule]:
    rules = []
    for path_text, rule_node in node.expect_dict("pii").items():
        path = _path(rule_node, path_text, allow_every=True)
        if path.scope != -1 or not path.steps:
            raise rule_node.error("pii paths start at the record", "write e.g. `email` or `contacts[].phone`")
        value = rule_node.value
        if isinstance(value, str):
            kind, argument, arg_node = value, None, rule_node
        else:
            options = rule_node.expect_dict("a pii rule")
            if len(options) != 1:
                raise rule_node.error(
                    "a pii rule names one transform", 'write e.g. `{mask: 4}` or `{hmac: "${secret:k}"}`'
                )
            kind, arg_node = next(iter(options.items()))
            argument = arg_node.value
        if kind not in PII_KINDS:
            near = suggest(str(kind), set(PII_KINDS))
            raise rule_node.error(
                f"unknown pii transform `{kind}`",
                f"write {near}" if near else f"one of: {', '.join(PII_KINDS)}",
            )
        if kind == "hmac":
            if isinstance(argument, dict):
                arg_node = arg_node.check_keys(frozenset({"key"}), "hmac")["key"]
                argument = arg_node.value
            if argument is None:
                raise rule_node.error("hmac needs a key", 'write `{hmac: "${secret:name}"}`')
            transform = hmac_sha256(_secret(arg_node, argument, resolve))
        elif kind == "mask":
            keep = 4 if argument is None else argument
            if not isinstance(keep, int) or isinstance(keep, bool) or not 1 <= keep <= MASK_MAX_KEEP:
                raise arg_node.error(
                    f"mask keeps a whole number of last characters, from 1 to {MASK_MAX_KEEP}",
                    "write e.g. `{mask: 4}`; at most half of a value's characters ever show",
                )
            transform = mask(keep)
        else:
            if argument is not None:
                raise arg_node.error(f"`{kind}` takes no argument", f"write `{path_text}: {kind}`")
            transform = {"redact": redact, "year": year_only, "drop": drop}[kind]
        rules.append(PiiRule(path.text, path.steps, kind, transform))
    return rules


def _output(node: Node, targets: dict[str, TargetKind]) -> OutputSpec:
    options = node.check_keys(OUTPUT_KEYS, "an output")
    if "dms" in options:
        options = _with_dms_rule(options, targets)
    for required in ("target", "table", "columns"):
        if required not in options:
            raise node.error(f"the output has no `{required}:`", _OUTPUT_HINTS[required])
    target = _output_target(options["target"], targets)
    kind = targets[target]
    table = _table_name(options["table"], kind)
    explode: tuple[Path, ...] = ()
    explode_text = None
    if "explode" in options:
        explode_text, explode = _explode(options["explode"])
    scopes = 1 + len(explode)
    columns = _output_columns(options["columns"], scopes)
    key_declared = "key" in options
    output = OutputSpec(
        target,
        kind,
        table,
        _output_key(options["key"]) if key_declared else (),
        columns,
        node,
        explode,
        explode_text,
        parent=options["parent"].expect_str("parent") if "parent" in options else None,
        where=_expression(options["where"], scopes=scopes) if "where" in options else None,
        key_declared=key_declared,
        nulls=_nulls(options["nulls"], kind) if "nulls" in options else "null",
    )
    if "condition" in options:
        _condition(output, options["condition"], scopes)
    if "dms" in options:
        rule = options["dms"].value
        parameters = rule["mapping-parameters"].value
        output.dms_copies = rule["rule-action"].value == "map-record-to-record"
        if "exclude-columns" in parameters:
            output.dms_excluded = frozenset(item.value for item in parameters["exclude-columns"].value)
    return output


def _with_dms_rule(options: dict[str, Node], targets: dict[str, TargetKind]) -> dict[str, Node]:
    """A `dms:` output's options: what its DMS rule says, plus the output's own target, where, nulls."""
    kind = targets.get(options["target"].value) if "target" in options else None
    if kind in SINK_TYPES and not rules_for(kind).dms_items:
        engine = rules_for(kind).engine
        raise options["dms"].error(
            f"AWS DMS object-mapping rules describe {engines_with('dms_items')} items; this output's "
            f"target is {engine}",
            f"write `table`, `key` and `columns` for a {engine} output",
        )
    extra = set(options) - {"dms", "target", "description", "where", "nulls"}
    if extra:
        raise options[sorted(extra)[0]].error(
            "a `dms:` output takes only target, where, nulls and description",
            "move columns into the DMS rule's attribute-mappings",
        )
    return {**translate_dms(options["dms"]), **options}


def _output_target(target_node: Node, targets: dict[str, TargetKind]) -> str:
    target = target_node.expect_str("target")
    if target not in targets:
        near = suggest(target, set(targets))
        raise target_node.error(
            f"unknown target `{target}`",
            near or f"declare it under `targets:` (declared: {', '.join(targets)})",
        )
    return target


def _table_name(node: Node, kind: TargetKind) -> str:
    """The output's table name, once it is a name the target stores as written."""
    table = node.expect_str("table")
    if not _NAME.match(table) or rules_for(kind).names.stored(table) != table:
        limited = [rules_for(k).names for k in SINK_TYPES if rules_for(k).names.identifier_bytes]
        said = ", ".join(f"at most {n.identifier_bytes} bytes for {n.engine}" for n in limited)
        raise node.error(
            f"`{table}` is not a usable table name",
            "use letters, digits and underscores" + (f" ({said})" if said else ""),
        )
    return table


def _output_columns(node: Node, scopes: int) -> list[ColumnSpec]:
    columns: list[ColumnSpec] = []
    seen: dict[str, Node] = {}
    for name, column_node in node.expect_dict("columns").items():
        for column in _columns(name, column_node, scopes):
            if column.name in seen:
                raise column.node.error(
                    f"duplicate column `{column.name}` (also made at line {seen[column.name].line})",
                    "rename one of them",
                )
            seen[column.name] = column.node
            columns.append(column)
    if not columns:
        raise node.error("the output has no columns", "add at least the key columns")
    return columns


def _output_key(key_node: Node) -> tuple[str, ...]:
    names = (
        [key_node.value]
        if isinstance(key_node.value, str)
        else [item.expect_str("a key column") for item in key_node.expect_list("key")]
    )
    if not names or len(set(names)) != len(names):
        raise key_node.error("key lists distinct column names", "write e.g. `key: [customer_id]`")
    return tuple(names)


def _condition(output: OutputSpec, node: Node, scopes: int) -> None:
    """`condition: {expression, names: {#n: attribute}, values: {:v: column}}` on a DynamoDB output
    (also what a DMS condition-expression becomes): every write must meet it."""
    if not output.rules.conditional_writes:
        raise node.error(f"a condition applies to {engines_with('conditional_writes')} writes", "remove it")
    parts = node.check_keys(frozenset({"expression", "names", "values"}), "condition")
    if "expression" not in parts:
        raise node.error("the condition has no `expression`",
                         "write e.g. `expression: attribute_not_exists(pk)`")
    expression = parts["expression"].expect_str("expression")
    names = {name: item.expect_str("an attribute name")
             for name, item in (parts["names"].expect_dict("names") if "names" in parts else {}).items()}
    values = parts["values"].expect_dict("values") if "values" in parts else {}
    placeholders = ((r"#[A-Za-z0-9_]+", names, "names"), (r":[A-Za-z0-9_]+", values, "values"))
    for pattern, defined, kind in placeholders:
        undefined = sorted(set(re.findall(pattern, expression)) - set(defined))
        if undefined:
            raise parts["expression"].error(f"`{undefined[0]}` is not defined under `{kind}`",
                                            f"add `{undefined[0]}` to the condition's `{kind}`")
    for placeholder, value_node in values.items():
        if not re.fullmatch(r":[A-Za-z0-9_]+", placeholder):
            raise value_node.error(f"`{placeholder}` is not a value placeholder", "write e.g. `:version`")
        (column,) = _columns("condition_value", value_node, scopes)
        column.name = placeholder
        output.condition_values.append(column)
    output.condition = WriteCondition(expression, tuple(sorted(names.items())),
                                      tuple(column.name for column in output.condition_values))


def _nulls(node: Node, kind: str) -> str:
    if node.value is None:  # YAML reads a bare `null` as nothing
        return "null"
    if node.value not in NULLS:
        raise node.error("`nulls` is `null` or `omit`", "write `nulls: omit` to leave null attributes out")
    if node.value == "omit" and not rules_for(kind).omits_nulls:
        raise node.error(
            f"`nulls: omit` applies to {engines_with('omits_nulls')} outputs: a {rules_for(kind).engine} row "
            "has every column",
            "remove it; a null value is stored as NULL",
        )
    return node.value


_OUTPUT_HINTS = {
    "target": "add `target: <name from targets:>`",
    "table": "add `table: <table name at the target>`",
    "columns": "add `columns:` mapping column names to source paths",
}


def _explode(node: Node) -> tuple[str, tuple[Path, ...]]:
    text = node.expect_str("explode")
    path = _path(node, text if text.endswith("[]") else text + "[]", allow_every=True)
    if path.scope != -1:
        raise node.error(
            "explode paths start at the record (or at the parent's element)",
            "write e.g. `invoices[]` or `invoices[].lines[]`",
        )
    levels: list[Path] = []
    current: list[Any] = []
    for step in path.steps:
        if step is None:
            if not current:
                raise node.error("`[]` must follow a field name", "write e.g. `invoices[].lines[]`")
            levels.append(Path(-1, tuple(current), ".".join(str(s) for s in current)))
            current = []
        else:
            current.append(step)
    return text if text.endswith("[]") else text + "[]", tuple(levels)


def _columns(name: str, node: Node, scopes: int) -> list[ColumnSpec]:
    if not _NAME.match(name):
        raise node.error(f"`{name}` is not a usable column name", "use letters, digits and underscores")
    if isinstance(node.value, str):
        return [
            ColumnSpec(
                name, "from", parse_type("string"), node, path=_column_path(node, node.value, scopes), at=node
            )
        ]
    options = node.check_keys(COLUMN_KEYS, f"column `{name}`")
    kinds = [kind for kind in SOURCE_KINDS if kind in options]
    if len(kinds) != 1:
        raise node.error(
            f"column `{name}` needs exactly one of {', '.join(SOURCE_KINDS)} (found {len(kinds)})",
            f"write e.g. `{name}: {{from: {name}, type: string}}`",
        )
    if kinds[0] == "flatten":
        return _flatten(name, node, options, scopes)
    kind = cast(ColumnKind, kinds[0])
    column_type = _column_type(kind, options)
    source = options[kind]
    column = ColumnSpec(name, kind, column_type, node, at=source)
    if kind == "from":
        column.path = _column_path(source, source.value, scopes)
    elif kind == "const":
        column.const = _cast_literal(source, column_type, source.plain())
    elif kind == "template":
        column.template = _template(source, scopes)
    elif kind == "expr":
        column.expr = _expression(source, scopes=scopes)
    elif kind == "map":
        column.map_tree = _map_tree(source, scopes)
    elif kind == "rest":
        _rest_source(column, source, options.get("exclude"), scopes)
    elif "exclude" in options:
        raise options["exclude"].error("`exclude` belongs to `rest: true` columns", "remove it")
    _column_options(column, options)
    return [column]


def _column_type(kind: ColumnKind, options: dict[str, Node]) -> ColumnType:
    """The declared type, or the one a column of this kind has when none is declared (documents for
    `map` and `rest`, which take no other)."""
    if kind not in ("map", "rest"):
        return _type(options["type"]) if "type" in options else _default_type(kind, options[kind])
    column_type = _type(options["type"]) if "type" in options else parse_type("json")
    if column_type.base != "json":
        raise options["type"].error(
            f"a `{kind}` column is a document: its type is json/map",
            "remove `type:` or write `type: map`",
        )
    return column_type


def _rest_source(column: ColumnSpec, source: Node, exclude: Node | None, scopes: int) -> None:
    """A `rest: true | all` column: which remaining fields it keeps, less `exclude:`."""
    if source.value not in (True, "all"):
        raise source.error(
            "write `rest: true` for the fields no other column reads, `rest: all` for every field",
            "list fields to leave out under `exclude:`",
        )
    column.rest_all = source.value == "all"
    if scopes != 1:
        raise source.error(
            "`rest` reads the remaining top-level fields of the record",
            "use `from: $this, type: map` to keep an element whole",
        )
    column.exclude = (
        frozenset(item.expect_str("an excluded field") for item in exclude.expect_list("exclude"))
        if exclude
        else frozenset()
    )


def _default_type(kind: str, source: Node) -> ColumnType:
    if kind == "const":
        value = source.value
        if isinstance(value, bool):
            return parse_type("bool")
        if isinstance(value, int):
            return parse_type("int")
        if isinstance(value, float):
            return parse_type("float")
        if isinstance(value, (dict, list)):
            return parse_type("json")
    return parse_type("string")


def _type(node: Node) -> ColumnType:
    if not isinstance(node.value, str):
        raise node.error("a type is text", "write e.g. `type: decimal(10,2)`")
    try:
        return mapping_type(node.value)
    except ValueError as exc:
        near = suggest(node.value.split("(")[0].strip().lower(), set(ALL_TYPE_WORDS))
        raise node.error(
            str(exc),
            f"{near} Types: {', '.join(ALL_TYPE_WORDS)}" if near else f"types: {', '.join(ALL_TYPE_WORDS)}",
        ) from None


def _column_path(node: Node, text: Any, scopes: int) -> Path:
    path = _path(node, text)
    _check_scopes(node, [path], scopes)
    return path


def _template(node: Node, scopes: int) -> Template:
    text = node.value
    if not isinstance(text, str):
        raise node.error("a template is text", 'quote it: template: "CUSTOMER#{customer_id}"')
    try:
        template = parse_template(text)
    except TemplateError as exc:
        raise node.error(
            f"invalid template: {exc}",
            "write fields as {path} or {path:format}; write {{ and }} for literal braces",
        ) from None
    _check_scopes(node, template.paths, scopes)
    return template


def _map_tree(node: Node, scopes: int) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, child in node.expect_dict("map").items():
        if isinstance(child.value, str):
            path = _column_path(child, child.value, scopes)
            tree[name] = ColumnSpec(name, "from", parse_type("json"), child, path=path, at=child)
        elif isinstance(child.value, dict) and any(kind in child.value for kind in SOURCE_KINDS):
            specs = _columns(name, child, scopes)
            if len(specs) != 1 or specs[0].kind in ("rest",):
                raise child.error(
                    "a map member is one value", "use from, const, template, expr or a nested map"
                )
            if "type" not in child.value and specs[0].kind == "from":
                specs[0].type = parse_type("json")
            tree[name] = specs[0]
        elif isinstance(child.value, dict):
            tree[name] = _map_tree(child, scopes)
        else:
            raise child.error(
                "a map member is a source path, a column definition or a nested map",
                "write e.g. `phone: phone` or `home: {street: address.street}`",
            )
    return tree


def _flatten(name: str, node: Node, options: dict[str, Node], scopes: int) -> list[ColumnSpec]:
    base = _column_path(options["flatten"], options["flatten"].value, scopes)
    if "fields" not in options:
        raise node.error(
            "`flatten` needs `fields:` (sub-field: type)",
            "write e.g. `fields: {city: string, postal_code: string}`",
        )
    extra = set(options) - {"flatten", "fields", "prefix", "optional"}
    if extra:
        raise options[sorted(extra)[0]].error(
            "flatten takes only `fields`, `prefix` and `optional`", "give types per field under `fields:`"
        )
    optional = _optional(options, required=False)
    prefix = options["prefix"].expect_str("prefix") if "prefix" in options else f"{name}_"
    columns = []
    for field_name, type_node in options["fields"].expect_dict("fields").items():
        sub = parse_path(field_name) if not field_name.startswith("`") else None
        steps = sub.steps if sub else (field_name.strip("`"),)
        path = Path(base.scope, base.steps + steps, f"{base.text}.{field_name}")
        column_name = prefix + "_".join(str(step) for step in steps)
        column_type = _type(type_node) if type_node.value is not None else parse_type("string")
        columns.append(ColumnSpec(column_name, "from", column_type, type_node, path=path,
                                  optional=optional, at=type_node))
    return columns


def _column_options(column: ColumnSpec, options: dict[str, Node]) -> None:
    if "round" in options:
        if options["round"].value not in ("half_even",):
            raise options["round"].error("the only rounding is `half_even`", "write `round: half_even`")
        if column.type.base not in ("decimal", "timestamp", "timestamptz", "list", "set"):
            raise options["round"].error(
                f"`round` applies to decimal and timestamp columns, not {column.type.text}", "remove it"
            )
        column.rounding = "half_even"
    if "tz" in options:
        if column.type.base not in ("timestamp", "timestamptz", "list", "set"):
            raise options["tz"].error("`tz` applies to timestamp columns", "remove it")
        column.tz = options["tz"].expect_str("tz")
    if "items" in options:
        if column.type.base not in ("list", "set"):
            raise options["items"].error("`items` applies to list and set columns", "remove it")
        column.items = _type(options["items"])
    if "required" in options:
        if not isinstance(options["required"].value, bool):
            raise options["required"].error("required is true or false", "write `required: true`")
        column.required = options["required"].value
    column.optional = _optional(options, required=column.required)
    try:
        make_cast(column.type, rounding=column.rounding, tz=column.tz, items=column.items)
    except ValueError as exc:
        raise options.get("tz", column.node).error(str(exc), "fix the column options") from None
    if "default" in options:
        if column.kind == "const":
            raise options["default"].error("a constant needs no default", "remove `default:`")
        column.default = _cast_literal(options["default"], column.type, options["default"].plain(), column)


def _optional(options: dict[str, Node], *, required: bool) -> bool:
    """`optional: true` says the source may lack the column's paths in every record."""
    if "optional" not in options:
        return False
    node = options["optional"]
    if not isinstance(node.value, bool):
        raise node.error("optional is true or false", "write `optional: true`")
    if node.value and required:
        raise node.error(
            "a column cannot be both required and optional",
            "remove one: `required` rejects records without the value, `optional` allows a source without it",
        )
    return node.value


def _cast_literal(node: Node, column_type: ColumnType, value: Any, column: ColumnSpec | None = None) -> Any:
    if value is None:
        return None
    cast = make_cast(
        column_type,
        rounding=column.rounding if column else None,
        tz=column.tz if column else None,
        items=column.items if column else None,
    )
    try:
        return cast(value)
    except CastError as exc:
        raise node.error(
            f"the value does not fit type {column_type.text}: {exc.reason}",
            f"write a {column_type.text} value",
        ) from None


def _link_children(spec: MappingSpec) -> None:
    """Check explode/parent links: a child's explode path extends its parent's."""
    by_table = {(output.target, output.table): output for output in spec.outputs}
    for output in spec.outputs:
        node = output.node
        if output.parent is None:
            if output.explode and output.rules.child_tables:
                raise node.error(
                    f"exploded table `{output.table}` needs `parent:` (the table its rows belong to)",
                    "add `parent: <table of the enclosing record>`",
                )
            if output.explode and not output.key_declared:
                raise node.error("an exploded output without parent needs `key:`", "add `key: [...]`")
            continue
        if not output.rules.child_tables:
            raise node.error(
                f"{output.rules.engine} has no child tables: `parent` applies to "
                f"{engines_with('child_tables')} outputs",
                "remove `parent:` and build the key from $root fields",
            )
        if not output.explode:
            raise node.error(
                "`parent:` needs `explode:` (the array whose elements become rows)",
                "add e.g. `explode: invoices[]`",
            )
        parent = by_table.get((output.target, output.parent))
        if parent is None:
            tables = [o.table for o in spec.outputs if o.target == output.target and o.table != output.table]
            near = suggest(output.parent, set(tables))
            raise node.error(
                f"parent table `{output.parent}` is not an output of target `{output.target}`",
                near or f"tables of that target: {', '.join(tables) or 'none'}",
            )
        if parent.explode != output.explode[: len(parent.explode)] or len(output.explode) <= len(
            parent.explode
        ):
            raise node.error(
                f"explode path `{output.explode_text}` must extend the parent's "
                f"(`{parent.explode_text or 'the record'}`) by one or more arrays",
                f"write `{(parent.explode_text or '') + ('.' if parent.explode_text else '')}<array>[]`",
            )


def _check_tables(spec: MappingSpec) -> None:
    seen: dict[tuple[str, str], OutputSpec] = {}
    for output in spec.outputs:
        node = output.node
        if output.rules.key_required and not output.key and output.parent is None:
            raise node.error(
                f"table `{output.table}` has no `key:`",
                "add `key: [<primary key columns>]`; upserts and validation need it",
            )
        _check_key(output)
        _check_stored_names(output)
        names = {column.name for column in output.columns}
        if output.key_declared:
            for key_name in output.key:
                if key_name not in names:
                    near = suggest(key_name, names)
                    raise node.error(
                        f"key column `{key_name}` is not a column of this output",
                        near or f"columns: {', '.join(sorted(names))}",
                    )
        first = seen.get((output.target, output.table))
        if first is None:
            seen[(output.target, output.table)] = output
            continue
        if not output.rules.shared_tables:
            raise node.error(
                f"duplicate output: table `{output.table}` of target `{output.target}` "
                f"is already written at line {first.node.line}",
                "merge the columns into one output, or write another table",
            )
        if first.key != output.key:
            raise node.error(
                f"table `{output.table}` is written with key {list(output.key)} here but "
                f"{list(first.key)} at line {first.node.line}",
                "single-table design: every item type uses the same key attributes",
            )


def _check_stored_names(output: OutputSpec) -> None:
    """Two columns whose names the target engine cuts to the same name would be one column there."""
    limits = output.rules.names
    stored: dict[str, ColumnSpec] = {}
    for column in output.columns:
        first = stored.setdefault(limits.stored(column.name), column)
        if first is not column:
            raise column.node.error(
                f"columns `{first.name}` (line {first.node.line}) and `{column.name}` are one column in "
                f"{limits.engine}: it keeps only the first {limits.identifier_bytes} bytes of a name "
                f"({limits.reason}), and both begin `{limits.stored(column.name)}`",
                f"shorten one of the names so their first {limits.identifier_bytes} bytes differ",
            )


def _check_key(output: OutputSpec) -> None:
    """The key's arity and column types, where the target kind limits them (DynamoDB: one or two
    attributes, string, number or binary, always present)."""
    rules, node = output.rules, output.node
    if rules.key_columns is None and rules.key_types is None:
        return
    if rules.key_columns is not None and not 1 <= len(output.key) <= rules.key_columns:
        raise node.error(
            f"a {rules.engine} table's key is [partition key] or [partition key, sort key]",
            "write e.g. `key: [pk, sk]`",
        )
    for column in output.columns:
        if column.name in output.key:
            if rules.key_types is not None and column.type.base not in rules.key_types:
                raise column.node.error(
                    f"{rules.engine} key attribute `{column.name}` cannot be {column.type.text}: keys are "
                    "string, number or binary",
                    "write `type: string`, `int`, `decimal` or `bytes`",
                )
            column.required = True
