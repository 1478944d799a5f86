"""Validation before data moves: each mistake is a MappingError naming file:line:column, path and fix."""

from __future__ import annotations

import textwrap

import pytest

from etl.errors import MappingError
from etl.mapping import load_mapping, parse_mapping


def error_of(text: str) -> str:
    with pytest.raises(MappingError) as caught:
        parse_mapping(text, "m.yaml", resolve=lambda text, where: "key")
    return str(caught.value)


ONE = """\
targets: {pg: postgres}
outputs:
  - target: pg
    table: t
    key: [id]
    columns:
      id: {from: id, type: int}
"""


def test_a_valid_mapping_loads():
    spec = parse_mapping(textwrap.dedent(ONE), "m.yaml")
    assert [(o.target, o.table, o.key) for o in spec.outputs] == [("pg", "t", ("id",))]


def test_unknown_top_level_key_points_at_the_key():
    assert error_of("targets: {pg: postgres}\noutput: []\n") == (
        "m.yaml:2:1: output: unknown key `output` in a mapping file\n  hint: write `outputs` instead"
    )


def test_duplicate_yaml_key():
    assert error_of("targets: {pg: postgres}\ntargets: {pg: postgres}\n") == (
        "m.yaml:2:1: targets: duplicate key `targets` (first written at line 1)\n  hint: keep one of them"
    )


def test_yaml_syntax_error_has_a_place():
    assert error_of("targets: {pg: postgres\n").startswith(
        "m.yaml:2:1: YAML syntax error: expected ',' or '}'"
    )


def test_missing_key():
    assert error_of(ONE.replace("    key: [id]\n", "")) == (
        "m.yaml:3:5: outputs[0]: table `t` has no `key:`\n"
        "  hint: add `key: [<primary key columns>]`; upserts and validation need it"
    )


def test_key_column_not_a_column_suggests_nearest():
    assert error_of(ONE.replace("key: [id]", "key: [idd]")) == (
        "m.yaml:3:5: outputs[0]: key column `idd` is not a column of this output\n  hint: did you mean `id`?"
    )


def test_unknown_target_suggests_nearest():
    assert error_of(ONE.replace("target: pg", "target: pgg")) == (
        "m.yaml:3:13: outputs[0].target: unknown target `pgg`\n  hint: did you mean `pg`?"
    )


def test_unknown_target_kind():
    assert error_of(ONE.replace("{pg: postgres}", "{pg: postgress}")) == (
        "m.yaml:1:15: targets.pg: unknown target kind `postgress`\n  hint: did you mean `postgres`?"
    )


def test_duplicate_output_table():
    text = (
        ONE + "  - target: pg\n    table: t\n    key: [id]\n    columns:\n      id: {from: id, type: int}\n"
    )
    assert error_of(text) == (
        "m.yaml:8:5: outputs[1]: duplicate output: table `t` of target `pg` is already written at line 3\n"
        "  hint: merge the columns into one output, or write another table"
    )


def test_duplicate_column_from_flatten():
    text = ONE + "      a_city: city\n      a: {flatten: addr, prefix: a_, fields: {city: string}}\n"
    assert error_of(text) == (
        "m.yaml:9:53: outputs[0].columns.a.fields.city: duplicate column `a_city` (also made at line 8)\n"
        "  hint: rename one of them"
    )


LONG = "customer_lifetime_value_in_the_reporting_currency_after_discoun"  # 63 bytes


def test_postgres_column_names_that_share_their_first_63_bytes_are_refused():
    assert len(LONG.encode()) == 63
    text = ONE + f"      {LONG}_amount: a\n      {LONG}_refund: b\n"
    assert error_of(text) == (
        f"m.yaml:9:79: outputs[0].columns.{LONG}_refund: columns `{LONG}_amount` (line 8) and "
        f"`{LONG}_refund` are one column in PostgreSQL: it keeps only the first 63 bytes of a name "
        f"(NAMEDATALEN-1), and both begin `{LONG}`\n"
        "  hint: shorten one of the names so their first 63 bytes differ"
    )
    # the same names are two attributes in DynamoDB, which keeps names whole
    dynamo = text.replace("targets: {pg: postgres}", "targets: {pg: dynamodb}")
    assert [c.name for c in parse_mapping(dynamo, "m.yaml").outputs[0].columns][1:] == [
        f"{LONG}_amount", f"{LONG}_refund"]


def test_unknown_column_option_suggests_nearest():
    assert error_of(ONE.replace("{from: id", "{form: id")) == (
        "m.yaml:7:12: outputs[0].columns.id.form: unknown key `form` in column `id`\n"
        "  hint: write `from` instead"
    )


def test_bad_type():
    message = error_of(ONE.replace("type: int", "type: integr"))
    assert message.startswith(
        "m.yaml:7:28: outputs[0].columns.id.type: unknown type `integr`\n"
        "  hint: did you mean `int`? Types: string, int,"
    )
    assert error_of(ONE.replace("type: int", 'type: "decimal(50,2)"')).startswith(
        "m.yaml:7:28: outputs[0].columns.id.type: decimal(50,2) needs 1 <= p <= 38 and 0 <= s <= p"
    )


def test_default_that_does_not_fit_its_type():
    assert error_of(ONE + "      n: {from: n, type: int, default: abc}\n") == (
        "m.yaml:8:40: outputs[0].columns.n.default: the value does not fit type int: "
        "the text is not a number\n"
        "  hint: write a int value"
    )


def test_dynamodb_key_must_be_string_number_or_bytes():
    text = ONE.replace("{pg: postgres}", "{pg: dynamodb}").replace("type: int", "type: json")
    assert error_of(text) == (
        "m.yaml:7:11: outputs[0].columns.id: DynamoDB key attribute `id` cannot be json: keys are string, "
        "number or binary\n  hint: write `type: string`, `int`, `decimal` or `bytes`"
    )


def test_dynamodb_key_has_one_or_two_attributes():
    text = ONE.replace("{pg: postgres}", "{pg: dynamodb}").replace("key: [id]", "key: [id, a, b]")
    assert error_of(text).startswith(
        "m.yaml:3:5: outputs[0]: a DynamoDB table's key is [partition key] or [partition key, sort key]"
    )


def test_single_table_type_conflict_and_key_conflict():
    base = """\
        targets: {d: dynamodb}
        outputs:
          - target: d
            table: t
            key: [pk]
            columns:
              pk: {from: id}
              n: {from: n, type: int}
          - target: d
            table: t
            key: [pk]
            columns:
              pk: {from: id}
              n: {from: n, type: string}
        """
    base = textwrap.dedent(base)
    assert error_of(base) == (
        "m.yaml:14:10: outputs[1].columns.n: attribute `n` of table `t` is string here but int in the output "
        "at line 3\n  hint: single-table design: give an attribute one type in every item type"
    )
    second = base.rindex("  - target: d")
    keyed = base[:second] + base[second:].replace("key: [pk]", "key: [pk, sk]").replace(
        "n: {from: n, type: string}", "sk: id"
    )
    assert error_of(keyed) == (
        "m.yaml:9:5: outputs[1]: table `t` is written with key ['pk', 'sk'] here but ['pk'] at line 3\n"
        "  hint: single-table design: every item type uses the same key attributes"
    )


def test_unknown_function_and_bad_expression():
    assert error_of(ONE + '      x: {expr: "lowr(name)"}\n').startswith(
        "m.yaml:8:18: outputs[0].columns.x.expr: invalid expression: unknown function `lowr`; did you mean "
        "`lower`?"
    )
    assert error_of(ONE + '      x: {expr: "a +"}\n') == (
        "m.yaml:8:21: outputs[0].columns.x.expr: invalid expression: expected a value, found the end\n"
        "  hint: see the expression language in docs/mapping.md"
    )


def test_hmac_key_must_be_interpolated_and_interpolation_must_be_available():
    pii = ONE.replace("outputs:", 'pii: {email: {hmac: "abc"}}\noutputs:')
    assert error_of(pii) == (
        "m.yaml:2:21: pii.email.hmac: an HMAC key must come from the environment or a secret store, "
        "never the "
        'file\n  hint: write `hmac: "${secret:name}"` or `hmac: "${env:NAME}"`'
    )
    with pytest.raises(MappingError) as caught:
        parse_mapping(textwrap.dedent(pii.replace('"abc"', '"${secret:k}"')), "m.yaml")
    assert str(caught.value) == (
        "m.yaml:2:21: pii.email.hmac: this mapping needs `${...}` interpolation for its HMAC key\n"
        "  hint: load it through a job file, or pass resolve= to load_mapping"
    )


def test_resolver_gets_the_reference_and_place():
    seen = []
    text = textwrap.dedent(ONE.replace("outputs:", 'pii: {email: {hmac: "${secret:k}"}}\noutputs:'))
    parse_mapping(text, "m.yaml", resolve=lambda ref, where: seen.append((ref, where)) or "x")
    assert seen == [("${secret:k}", "m.yaml:2:21 (pii.email.hmac)")]


def test_unknown_pii_transform():
    assert error_of(ONE.replace("outputs:", "pii: {email: hash}\noutputs:")) == (
        "m.yaml:2:14: pii.email: unknown pii transform `hash`\n  hint: one of: hmac, mask, redact, year, drop"
    )


def test_explode_rules():
    child = ONE + "  - target: pg\n    table: lines\n    explode: lines[]\n    columns:\n      n: n\n"
    assert error_of(child) == (
        "m.yaml:8:5: outputs[1]: exploded table `lines` needs `parent:` (the table its rows belong to)\n"
        "  hint: add `parent: <table of the enclosing record>`"
    )
    assert error_of(child.replace("explode: lines[]", "explode: lines[]\n    parent: tt")) == (
        "m.yaml:8:5: outputs[1]: parent table `tt` is not an output of target `pg`\n  hint: did you mean `t`?"
    )
    assert error_of(
        child.replace("n: n", "id: id").replace("explode: lines[]", "explode: lines[]\n    parent: t")
    ).startswith("m.yaml:8:5: outputs[1]: column `id` is filled with the parent's key")


def test_parent_scope_only_in_exploded_outputs():
    assert error_of(ONE + "      x: $parent.a\n") == (
        "m.yaml:8:10: outputs[0].columns.x: `$parent` in `$parent.a` only exists in exploded outputs\n"
        "  hint: name a field of the record directly"
    )


def test_bad_paths():
    assert error_of(ONE + "      x: a..b\n").startswith(
        "m.yaml:8:10: outputs[0].columns.x: expected a field name at character 3 of `a..b`"
    )
    assert error_of(ONE + "      x: a.__class__\n").startswith(
        "m.yaml:8:10: outputs[0].columns.x: the name `__class__` is refused"
    )


def test_template_without_field_and_bad_round():
    assert error_of(ONE + '      x: {template: "fixed"}\n').startswith(
        "m.yaml:8:21: outputs[0].columns.x.template: invalid template: the template names no field"
    )
    assert error_of(ONE + "      x: {from: x, round: half_even}\n") == (
        "m.yaml:8:27: outputs[0].columns.x.round: `round` applies to decimal and timestamp columns, "
        "not string\n"
        "  hint: remove it"
    )


def test_unreadable_file(tmp_path):
    with pytest.raises(MappingError) as caught:
        load_mapping(tmp_path / "nope.yaml")
    assert str(caught.value).startswith(f"{tmp_path / 'nope.yaml'}: cannot read the mapping file")


def test_a_directory_is_not_a_mapping_file(tmp_path):
    with pytest.raises(MappingError) as caught:
        load_mapping(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: the mapping path is a directory, not a mapping file\n"
        "  hint: check the `mapping:` path in the job file: it names a YAML file (relative to the job file)"
    )


def test_every_example_mapping_loads():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "mappings"
    files = sorted(root.glob("*.yaml"))
    assert files
    for file in files:
        assert load_mapping(file, resolve=lambda ref, where: "k").outputs


@pytest.mark.parametrize("text, expected", [
    (ONE.replace("type: int}", "type: !!int abc}"),
     "m.yaml:7:28: outputs[0].columns.id.type: invalid value: 'abc' does not read as !!int"),
    (ONE.replace("key: [id]", "key: [!!bool maybe]"),
     "m.yaml:5:11: outputs[0].key[0]: invalid value: 'maybe' does not read as !!bool"),
    ("<<: {targets: {pg: postgres}}\n" + ONE,
     "m.yaml:1:1: (top): '<<' merges are not read in mapping files\n  hint: write the keys out"),
    ("!!int x: 1\n" + ONE, "m.yaml:1:1: (top): invalid key: 'x' does not read as !!int\n  hint: quote it"),
])
def test_a_tagged_value_that_does_not_read_as_its_tag_is_a_mapping_error(text, expected):
    assert error_of(text) == expected
