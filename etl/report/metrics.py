"""CloudWatch Embedded Metric Format: the end of a run as metrics CloudWatch Logs extracts by
itself, without an agent (`metrics: {cloudwatch_emf: true, namespace: ...}` in the job file).

One JSON object per line (the EMF specification: https://docs.aws.amazon.com/AmazonCloudWatch/latest/
monitoring/CloudWatch_Embedded_Metric_Format_Specification.html): one for the job (dimension `Job`),
one per source table (`Job`, `Table`) and one per validated target table (`Job`, `TargetTable`).
The metric names are listed in docs/reports.md; each object also carries `Status` and `Mode` as
plain properties, searchable in Logs Insights.
"""

from __future__ import annotations

import json
from datetime import datetime

from etl.report.run_report import RunReport

COUNT, SECONDS, PER_SECOND = "Count", "Seconds", "Count/Second"

JOB_METRICS = (("RecordsExtracted", COUNT), ("RecordsLoaded", COUNT), ("RecordsRejected", COUNT),
               ("RecordsFiltered", COUNT), ("RecordsExtractedThisRun", COUNT), ("RowsPerSecond", PER_SECOND),
               ("ValidationDifferences", COUNT), ("DurationSeconds", SECONDS), ("ExitCode", "None"))
TABLE_METRICS = (("RecordsExtracted", COUNT), ("RecordsLoaded", COUNT), ("RecordsRejected", COUNT),
                 ("RecordsFiltered", COUNT), ("RecordsExtractedThisRun", COUNT),
                 ("RowsPerSecond", PER_SECOND), ("DurationSeconds", SECONDS))
VALIDATION_METRICS = (("RowsCompared", COUNT), ("ValidationDifferences", COUNT))


def emf_lines(report: RunReport, namespace: str) -> list[str]:
    """The report's metrics as EMF lines, timestamped when the run finished."""
    stamp = int(datetime.fromisoformat(report.finished_at or report.started_at).timestamp() * 1000)
    common = {"Job": report.job, "Status": report.status, "Mode": report.mode}
    if report.shard:
        common["Shard"] = report.shard
    total = report.totals()
    differences = [_differences(check) for check in report.validation or []]
    lines = [_document(namespace, stamp, ["Job"], JOB_METRICS, common, {
        "RecordsExtracted": total.extracted, "RecordsLoaded": total.loaded, "RecordsRejected": total.rejected,
        "RecordsFiltered": total.filtered, "RecordsExtractedThisRun": total.extracted_this_run,
        "RowsPerSecond": round(total.extracted_this_run / report.seconds, 1) if report.seconds > 0 else 0.0,
        "ValidationDifferences": sum(differences), "DurationSeconds": report.seconds,
        "ExitCode": report.exit_code})]
    for table in report.tables:
        properties = {**common, "Table": table.table}
        lines.append(_document(namespace, stamp, ["Job", "Table"], TABLE_METRICS, properties, {
            "RecordsExtracted": table.extracted, "RecordsLoaded": table.loaded,
            "RecordsRejected": table.rejected, "RecordsFiltered": table.filtered,
            "RecordsExtractedThisRun": table.extracted_this_run,
            "RowsPerSecond": round(table.rows_per_second, 1), "DurationSeconds": round(table.seconds, 3)}))
    for check, count in zip(report.validation or [], differences, strict=True):
        lines.append(_document(namespace, stamp, ["Job", "TargetTable"], VALIDATION_METRICS,
                               {**common, "TargetTable": f"{check.target}.{check.table}"},
                               {"RowsCompared": check.rows_source, "ValidationDifferences": count}))
    return lines


def _differences(check) -> int:
    return check.missing + check.extra + check.changed + check.duplicates + check.unresolved_buckets


def _document(namespace: str, stamp: int, dimensions: list[str], metrics, properties: dict,
              values: dict) -> str:
    document = {"_aws": {"Timestamp": stamp, "CloudWatchMetrics": [{
        "Namespace": namespace, "Dimensions": [dimensions],
        "Metrics": [{"Name": name, "Unit": unit} for name, unit in metrics]}]}}
    document.update(properties)
    document.update(values)
    return json.dumps(document, separators=(",", ":"))
