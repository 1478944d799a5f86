"""Canonical encoding, row hashes, bucket checksums, manifests, diff and drill-down.

docs/checksum.md specifies the encoding; docs/internals.md ("Checksums") is the contract.

Names are imported on first use: a job file's `validation.tolerances` needs only
etl.checksum.tolerances, not the validation code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etl.checksum.buckets import BucketChecksums
    from etl.checksum.canonical import MISSING, UnencodableValue, encode
    from etl.checksum.diff import ChecksumSide, checksum_side, validate_table
    from etl.checksum.manifest import Manifest, ManifestError, TableManifest, compare_with_manifest
    from etl.checksum.results import Difference, FieldDifference, JobValidation, SourceCount, TableValidation
    from etl.checksum.rowhash import RowHasher, bucket_of, row_hash
    from etl.checksum.tolerances import Tolerances

_LAZY = {
    "BucketChecksums": "etl.checksum.buckets",
    "MISSING": "etl.checksum.canonical",
    "UnencodableValue": "etl.checksum.canonical",
    "encode": "etl.checksum.canonical",
    "ChecksumSide": "etl.checksum.diff",
    "checksum_side": "etl.checksum.diff",
    "validate_table": "etl.checksum.diff",
    "Manifest": "etl.checksum.manifest",
    "ManifestError": "etl.checksum.manifest",
    "TableManifest": "etl.checksum.manifest",
    "compare_with_manifest": "etl.checksum.manifest",
    "Difference": "etl.checksum.results",
    "FieldDifference": "etl.checksum.results",
    "JobValidation": "etl.checksum.results",
    "SourceCount": "etl.checksum.results",
    "TableValidation": "etl.checksum.results",
    "RowHasher": "etl.checksum.rowhash",
    "bucket_of": "etl.checksum.rowhash",
    "row_hash": "etl.checksum.rowhash",
    "Tolerances": "etl.checksum.tolerances",
}

__all__ = [
    "MISSING",
    "BucketChecksums",
    "ChecksumSide",
    "Difference",
    "FieldDifference",
    "JobValidation",
    "Manifest",
    "ManifestError",
    "RowHasher",
    "SourceCount",
    "TableManifest",
    "TableValidation",
    "Tolerances",
    "UnencodableValue",
    "bucket_of",
    "checksum_side",
    "compare_with_manifest",
    "encode",
    "row_hash",
    "validate_table",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'etl.checksum' has no attribute {name!r}")
