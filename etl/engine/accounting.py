"""Record accounting: every extracted record is loaded, rejected or filtered — exactly once.

The four figures are gathered independently (extracted from the source's batches, filtered from
the mapping, rejected from the reject records, loaded from the source keys behind the rows the
sinks accepted), so `extracted = loaded + rejected + filtered` is a real check, not arithmetic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from etl.errors import RuntimeFailure

ROWS_PREFIX = "rows:"
MAX_REASONS = 50
"""Distinct reject reasons kept per partition; the rest are counted under OTHER_REASONS."""
OTHER_REASONS = "(other reasons)"


@dataclass
class Counts:
    """Figures of one partition or table, cumulative since the job's last full refresh."""

    extracted: int = 0
    loaded: int = 0
    rejected: int = 0
    filtered: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    """Rows written per target table, keyed `target.table`."""
    reasons: dict[str, int] = field(default_factory=dict)
    """Reject reasons and how many records each rejected."""

    def add(self, other: Counts) -> None:
        self.extracted += other.extracted
        self.loaded += other.loaded
        self.rejected += other.rejected
        self.filtered += other.filtered
        for key, value in other.rows.items():
            self.rows[key] = self.rows.get(key, 0) + value
        self.add_reasons(other.reasons)

    def add_reasons(self, reasons: Mapping[str, int]) -> None:
        for reason, count in reasons.items():
            if reason not in self.reasons and len(self.reasons) >= MAX_REASONS:
                reason = OTHER_REASONS
            self.reasons[reason] = self.reasons.get(reason, 0) + count

    def copy(self) -> Counts:
        return Counts(self.extracted, self.loaded, self.rejected, self.filtered, dict(self.rows),
                      dict(self.reasons))

    @property
    def balanced(self) -> bool:
        return self.extracted == self.loaded + self.rejected + self.filtered

    def top_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        return Counter(self.reasons).most_common(n)

    def to_checkpoint(self) -> dict[str, int]:
        """The `Checkpoint.counts` form: the four figures plus `rows:<target>.<table>`."""
        counts = {"extracted": self.extracted, "loaded": self.loaded, "rejected": self.rejected,
                  "filtered": self.filtered}
        counts.update({ROWS_PREFIX + key: value for key, value in self.rows.items()})
        return counts

    @classmethod
    def from_checkpoint(cls, counts: Mapping[str, int], reasons: Mapping[str, int] | None = None) -> Counts:
        rows = {k[len(ROWS_PREFIX):]: v for k, v in counts.items() if k.startswith(ROWS_PREFIX)}
        return cls(counts.get("extracted", 0), counts.get("loaded", 0), counts.get("rejected", 0),
                   counts.get("filtered", 0), rows, dict(reasons or {}))


def check_accounting(tables: Mapping[str, Counts]) -> None:
    """Fail the run when any table's records do not add up; that is a defect, never user error."""
    wrong = [(key, c) for key, c in tables.items() if not c.balanced]
    if wrong:
        lines = "; ".join(
            f"{key}: extracted {c.extracted} != loaded {c.loaded} + rejected {c.rejected} "
            f"+ filtered {c.filtered}" for key, c in wrong
        )
        raise RuntimeFailure(
            f"record accounting does not balance ({lines})",
            hint="records were lost or counted twice between source, mapping and sinks; this is a "
            "defect: keep the state store and dead letters and report it",
        )


def count_reasons(reasons: Iterable[str]) -> dict[str, int]:
    return dict(Counter(reasons))
