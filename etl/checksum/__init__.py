"""Canonical encoding, row hashes, bucket checksums, manifests, diff and drill-down."""
