"""Comparison tolerances. Each is off by default and, when on, is shown in every report.

All but `float_ulps` are quantisations applied before encoding (docs/checksum.md, section 7).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from etl.settings_types import Integer


class Tolerances(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp_precision: Integer | None = Field(default=None, ge=0, le=9)
    """Compare timestamps truncated to this many fractional-second digits (None: exact)."""
    float_ulps: Integer | None = Field(default=None, ge=0)
    """Floats equal when at most this many units in the last place apart (None: exact). Hashes
    cannot honour it: mismatched buckets are compared row by row with it (docs/checksum.md)."""
    unicode_nfc: bool = False
    """Compare strings after Unicode NFC normalisation."""
    rstrip_char: bool = False
    """Ignore trailing blanks (CHAR padding)."""
    case_insensitive_keys: bool = False
    """Match keys regardless of letter case."""

    def active(self) -> dict[str, object]:
        """The tolerances that are on, for reports."""
        defaults = Tolerances()
        return {k: v for k, v in self.model_dump().items() if v != getattr(defaults, k)}
