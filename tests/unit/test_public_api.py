"""The public API in etl/__init__.py names real objects, each from the layer that owns it."""

import etl


def test_every_public_name_resolves_to_its_owner():
    owners = {name: getattr(etl, name).__module__ for name in etl.__all__}
    assert owners == {
        "ConnectionFailed": "etl.errors",
        "EtlError": "etl.errors",
        "JobFileError": "etl.errors",
        "MappingError": "etl.errors",
        "RuntimeFailure": "etl.errors",
        "ValidationDifferences": "etl.errors",
        "load_job": "etl.api",
        "run_job": "etl.engine.runner",
        "RunOptions": "etl.engine.runner",
        "validate_job": "etl.engine.validation",
        "plan_job": "etl.engine.planning",
        "load_mapping": "etl.mapping.spec",
        "compile_mapping": "etl.mapping.compile",
        "validate_table": "etl.checksum.diff",
        "Manifest": "etl.checksum.manifest",
        "Tolerances": "etl.checksum.tolerances",
        "load_chain": "etl.restore.api",
        "plan_restore": "etl.restore.api",
        "verify_restore": "etl.restore.verify",
    }


def test_an_unknown_name_is_an_attribute_error():
    try:
        etl.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert str(error) == "module 'etl' has no attribute 'no_such_thing'"
    else:
        raise AssertionError("etl.no_such_thing resolved")
