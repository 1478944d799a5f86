"""Check a mapping against sample records: source paths that no sample has, and values that would be rejected.

Schemaless sources cannot prove a path never exists, so findings are warnings by default; with
`strict=True` they raise one MappingError listing them all (a job's `--plan` uses the warnings).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from etl.errors import MappingError
from etl.located import suggest
from etl.mapping.compile import CompiledMapping, compile_mapping
from etl.mapping.paths import MISSING, Path, make_getter
from etl.mapping.spec import MappingSpec, OutputSpec


@dataclass(frozen=True)
class SampleFinding:
    where: str
    """file:line:column of the mapping text at fault."""
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _contexts(output: OutputSpec, records: list[dict]) -> list[tuple]:
    contexts = [(record,) for record in records]
    for level in output.explode:
        getter = make_getter(level)
        contexts = [
            ctx + (element,)
            for ctx in contexts
            for element in (getter(ctx) if isinstance(getter(ctx), list) else [])
        ]
    return contexts


def _nearest(path: Path, contexts: list[tuple]) -> str | None:
    """`did you mean` for the first step of `path` that no context has, among the names found there."""
    names: set[str] = set()
    missing_step = None
    for ctx in contexts:
        value = ctx[path.scope] if len(ctx) >= -path.scope else None
        for step in path.steps:
            if isinstance(value, dict) and step in value:
                value = value[step]
            elif isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value):
                value = value[step]
            else:
                if isinstance(value, dict) and isinstance(step, str):
                    names.update(value)
                    missing_step = missing_step or step
                break
    return suggest(missing_step, names) if missing_step else None


def check_against_sample(
    mapping: MappingSpec | CompiledMapping, records: list[dict], *, strict: bool = False
) -> list[SampleFinding]:
    """Findings for paths absent from every sample record, and for samples the mapping would reject."""
    compiled = mapping if isinstance(mapping, CompiledMapping) else compile_mapping(mapping)
    spec = compiled.spec
    findings: list[SampleFinding] = []
    if not records:
        return findings
    safe_records = [compiled.safe_record(record) for record in records]
    for output in spec.outputs:
        contexts = _contexts(output, safe_records)
        if not contexts:
            if output.explode:
                findings.append(
                    SampleFinding(
                        output.node.where,
                        f"`{output.explode_text}` has no elements in "
                        f"any of the {len(records)} sample records",
                    )
                )
            continue
        for column in output.columns:
            if column.optional:
                continue
            for path in column.paths():
                getter = make_getter(path)
                if all(getter(ctx) is MISSING for ctx in contexts):
                    near = _nearest(path, contexts)
                    findings.append(
                        SampleFinding(
                            column.where,
                            f"{output.table}.{column.name}: path `{path.text}` is absent from all "
                            f"{len(contexts)} sampled {'elements' if output.explode else 'records'}"
                            + (f"; {near}" if near else ""),
                        )
                    )
    batch = compiled.apply(records, lambda record: "")
    reasons = Counter(reject.reason for reject in batch.rejects)
    for reason, count in reasons.most_common():
        findings.append(
            SampleFinding(spec.file, f"{count} of {len(records)} sample records would be rejected: {reason}")
        )
    if strict and findings:
        raise MappingError(
            f"{spec.file}: the mapping does not fit the sample:\n  "
            + "\n  ".join(str(finding) for finding in findings),
            hint="fix the paths or types named above",
        )
    return findings
