"""Canonical encoding, row hashes, bucket checksums, manifests, diff and drill-down.

docs/checksum.md specifies the encoding; docs/internals.md ("Checksums") is the contract.
"""

from etl.checksum.buckets import BucketChecksums
from etl.checksum.canonical import MISSING, UnencodableValue, encode
from etl.checksum.diff import ChecksumSide, checksum_side, validate_table
from etl.checksum.manifest import Manifest, ManifestError, TableManifest, compare_with_manifest
from etl.checksum.results import Difference, FieldDifference, JobValidation, SourceCount, TableValidation
from etl.checksum.rowhash import RowHasher, bucket_of, row_hash
from etl.checksum.tolerances import Tolerances

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
