"""The mapping language: `load_mapping` parses and validates a file, `compile_mapping` makes it fast.

See docs/mapping.md for the language and docs/internals.md ("Mappings") for the contract.
"""

from etl.mapping.compile import CompiledMapping, MappedBatch, Preview, compile_mapping
from etl.mapping.sample import SampleFinding, check_against_sample
from etl.mapping.spec import MappingSpec, load_mapping, parse_mapping

__all__ = [
    "CompiledMapping",
    "MappedBatch",
    "MappingSpec",
    "Preview",
    "SampleFinding",
    "check_against_sample",
    "compile_mapping",
    "load_mapping",
    "parse_mapping",
]
