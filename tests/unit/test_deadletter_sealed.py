"""Raw records in dead letters are kept only sealed (`dead_letter: {raw: encrypted}`): envelope encryption
with a data key from KMS (here moto's KMS, which runs the real GenerateDataKey/Decrypt semantics in
process) or, for tests and air-gapped use, from a local key file."""

import base64
import json
from decimal import Decimal

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from etl.errors import EtlError, JobFileError
from etl.job import load_job
from etl.records import Reject
from etl.sinks.deadletter import DeadLetterStore, read_dead_letters
from etl.sinks.deadletter_seal import KmsKeys, LocalKeys, Sealer, SealError

RAW = {"_id": 7, "email": "raw.person@patients.example", "ssn": "123-45-6789", "total": Decimal("12.50")}
SAFE = {"_id": 7, "email": "9f2c", "ssn": "[REDACTED]", "total": Decimal("12.50")}


def reject(n=7, raw=RAW):
    return Reject(table="patients", source_key=f"_id={n}", reason="total: too large", stage="map",
                  field_path="total", value_type="Decimal", record=SAFE, raw=raw)


def key_file(folder, name="dl.key", byte=b"k"):
    path = folder / name
    path.write_bytes(byte * 32)
    return path


def write(path, keys, rejects, job="clinic"):
    store = DeadLetterStore(path, job=job, sealer=Sealer(keys, job=job))
    store.add(rejects)
    store.close()


def test_the_raw_record_is_never_in_the_file_in_plaintext_and_opens_with_the_local_key(tmp_path):
    path = tmp_path / "dead.jsonl"
    keys = LocalKeys(key_file(tmp_path))
    write(path, keys, [reject(7), reject(8, raw={**RAW, "_id": 8})])
    data = path.read_bytes()
    for value in ("raw.person@patients.example", "123-45-6789", "raw.person", "6789"):
        assert value.encode() not in data
    for value in ("raw.person@patients.example", "123-45-6789"):
        assert base64.b64encode(value.encode()) not in data
    first, second = (json.loads(line) for line in data.splitlines())
    assert first["record"] == {"_id": 7, "email": "9f2c", "ssn": "[REDACTED]", "total": "12.50"}
    sealed = first["raw_record"]
    assert sorted(sealed) == ["alg", "ciphertext", "encrypted_key", "key_id", "nonce"]
    assert (sealed["alg"], sealed["key_id"]) == ("AES-256-GCM", keys.key_id)
    assert keys.key_id.startswith("local:") and len(keys.key_id) == len("local:") + 16
    # one data key per store: the same encrypted key beside both ciphertexts, a fresh nonce for each
    assert second["raw_record"]["encrypted_key"] == sealed["encrypted_key"]
    assert second["raw_record"]["nonce"] != sealed["nonce"]

    entries = list(read_dead_letters(path, keys=LocalKeys(tmp_path / "dl.key")))
    assert [entry["raw"] for entry in entries] == [
        {"_id": 7, "email": "raw.person@patients.example", "ssn": "123-45-6789", "total": "12.50"},
        {"_id": 8, "email": "raw.person@patients.example", "ssn": "123-45-6789", "total": "12.50"},
    ]
    assert "raw" not in next(read_dead_letters(path))  # without keys nothing is opened


def test_a_reject_without_a_raw_record_or_a_store_without_a_sealer_writes_no_raw_record(tmp_path):
    path = tmp_path / "dead.jsonl"
    write(path, LocalKeys(key_file(tmp_path)), [reject(raw=None)])
    plain = tmp_path / "plain.jsonl"
    store = DeadLetterStore(plain, job="clinic")
    assert store.keeps_raw is False
    store.add([reject()])
    store.close()
    assert "raw_record" not in json.loads(path.read_text())
    assert "raw_record" not in json.loads(plain.read_text())
    assert b"raw.person" not in plain.read_bytes()
    assert "raw.person" not in repr(reject())


def test_a_wrong_local_key_is_a_clear_error_naming_both_keys_and_the_line(tmp_path):
    path = tmp_path / "dead.jsonl"
    right = LocalKeys(key_file(tmp_path))
    write(path, right, [reject()])
    wrong = LocalKeys(key_file(tmp_path, "other.key", b"o"))
    with pytest.raises(SealError) as caught:
        list(read_dead_letters(path, keys=wrong))
    assert caught.value.message == (
        f"{path}:1: dead letters: this raw record was sealed with key {right.key_id}, and the key file "
        f"{tmp_path / 'other.key'} is {wrong.key_id}")
    assert caught.value.exit_code == 3


def test_a_sealed_record_moved_to_another_entry_does_not_open(tmp_path):
    path = tmp_path / "dead.jsonl"
    keys = LocalKeys(key_file(tmp_path))
    write(path, keys, [reject()])
    entry = json.loads(path.read_text())
    entry["source_key"] = "_id=99"
    path.write_text(json.dumps(entry) + "\n")
    with pytest.raises(SealError, match=r":1: the raw record does not open: its entry \(job, table, stage, "
                                        r"source key\) or ciphertext was changed after it was written$"):
        list(read_dead_letters(path, keys=keys))


@pytest.mark.parametrize("damage, kind", [
    (lambda sealed: sealed.pop("nonce"), "KeyError"),
    (lambda sealed: sealed.update(ciphertext="not base64!"), "Error"),
    (lambda sealed: sealed.update(encrypted_key=base64.b64encode(b"x" * 60).decode()), None),
])
def test_a_damaged_raw_record_is_a_seal_error(tmp_path, damage, kind):
    path = tmp_path / "dead.jsonl"
    keys = LocalKeys(key_file(tmp_path))
    write(path, keys, [reject()])
    entry = json.loads(path.read_text())
    damage(entry["raw_record"])
    path.write_text(json.dumps(entry) + "\n")
    with pytest.raises(SealError) as caught:
        list(read_dead_letters(path, keys=keys))
    assert caught.value.message.startswith(f"{path}:1: ")
    if kind is not None:
        assert caught.value.message == f"{path}:1: raw_record is damaged ({kind})"
    else:
        assert caught.value.message == (
            f"{path}:1: dead letters: the data key of a raw record does not open with the key file "
            f"{tmp_path / 'dl.key'} (wrong key or damaged entry)")


def test_a_key_file_must_hold_exactly_32_bytes(tmp_path):
    (tmp_path / "short.key").write_bytes(b"x" * 31)
    with pytest.raises(JobFileError) as caught:
        LocalKeys(tmp_path / "short.key")
    assert caught.value.message == (f"dead_letter.key_file: {tmp_path / 'short.key'} holds 31 bytes, "
                                    "expected exactly 32")
    with pytest.raises(JobFileError, match="dead_letter.key_file: cannot read .*missing.key: No such file"):
        LocalKeys(tmp_path / "missing.key")


@pytest.fixture
def kms(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("kms", region_name="us-east-1")
        key = client.create_key(Description="dead letters")["KeyMetadata"]
        client.create_alias(AliasName="alias/etl-dead-letters", TargetKeyId=key["KeyId"])
        yield client, key


def test_kms_envelope_round_trip_needs_kms_decrypt_on_the_same_key(tmp_path, kms):
    client, key = kms
    path = tmp_path / "dead.jsonl"
    write(path, KmsKeys("alias/etl-dead-letters", region="us-east-1"), [reject()])
    entry = json.loads(path.read_text())
    assert entry["raw_record"]["key_id"] == key["Arn"]
    assert b"raw.person" not in path.read_bytes()
    # the stored data key is a real KMS ciphertext under that key, bound to the job
    wrapped = base64.b64decode(entry["raw_record"]["encrypted_key"])
    opened = client.decrypt(CiphertextBlob=wrapped, EncryptionContext={"etl:job": "clinic"})
    assert (opened["KeyId"], len(opened["Plaintext"])) == (key["Arn"], 32)

    [read] = read_dead_letters(path, keys=KmsKeys("alias/etl-dead-letters", region="us-east-1"))
    assert read["raw"] == {"_id": 7, "email": "raw.person@patients.example", "ssn": "123-45-6789",
                           "total": "12.50"}

    # an entry whose job was changed asks KMS with another encryption context: KMS refuses
    entry["job"] = "other"
    path.write_text(json.dumps(entry) + "\n")
    with pytest.raises(SealError) as caught:
        list(read_dead_letters(path, keys=KmsKeys("alias/etl-dead-letters", region="us-east-1")))
    assert caught.value.message == (f"{path}:1: dead letters: KMS Decrypt with key {key['Arn']!r} failed: "
                                    "InvalidCiphertextException")


def test_kms_sealing_with_an_unknown_key_is_a_clear_error(tmp_path, kms):
    with pytest.raises(SealError) as caught:
        write(tmp_path / "dead.jsonl", KmsKeys("alias/missing", region="us-east-1"), [reject()])
    assert caught.value.message == "dead letters: KMS GenerateDataKey with key 'alias/missing' failed: " \
                                   "NotFoundException"
    assert "kms:GenerateDataKey" in caught.value.hint


def test_kms_requests_ask_for_an_aes_256_key_with_the_job_as_encryption_context(tmp_path):
    """The request shapes, checked with botocore's Stubber against KMS's service model (moto above
    checks the behaviour)."""
    client = boto3.client("kms", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    data_key = bytes(range(32))
    with Stubber(client) as stub:
        stub.add_response("generate_data_key",
                          {"Plaintext": data_key, "CiphertextBlob": b"wrapped", "KeyId": "arn:aws:kms:k"},
                          {"KeyId": "alias/dl", "KeySpec": "AES_256",
                           "EncryptionContext": {"etl:job": "clinic"}})
        stub.add_response("decrypt", {"Plaintext": data_key, "KeyId": "arn:aws:kms:k"},
                          {"CiphertextBlob": b"wrapped", "KeyId": "arn:aws:kms:k",
                           "EncryptionContext": {"etl:job": "clinic"}})
        keys = KmsKeys("alias/dl", client=client)
        path = tmp_path / "dead.jsonl"
        write(path, keys, [reject(), reject(8)])
        assert [entry["raw"]["_id"] for entry in read_dead_letters(path, keys=keys)] == [7, 7]
        stub.assert_no_pending_responses()


def test_kms_does_not_open_a_record_sealed_with_a_local_key(tmp_path):
    path = tmp_path / "dead.jsonl"
    local = LocalKeys(key_file(tmp_path))
    write(path, local, [reject()])
    with pytest.raises(SealError, match=f"sealed with a local key file \\({local.key_id}\\), not with KMS"):
        list(read_dead_letters(path, keys=KmsKeys("alias/dl", client=object())))


JOB = """\
version: 1
name: sealed
sources:
  dump: {{type: mongodump, path: dump, database: clinic, tables: {{}}}}
targets:
  pg: {{type: postgres, dsn: "host=localhost dbname=x"}}
dead_letter: {dead_letter}
"""


@pytest.mark.parametrize("dead_letter, message", [
    ("{raw: encrypted}", "`raw: encrypted` needs exactly one of `kms_key` (AWS KMS) and `key_file`"),
    ("{raw: encrypted, kms_key: alias/a, key_file: k}", "`raw: encrypted` needs exactly one of `kms_key`"),
    ("{kms_key: alias/a}", "`kms_key` and `key_file` apply only with `raw: encrypted`"),
    ("{raw: plain}", "dead_letter.raw"),
    ("{raw: encrypted, key_file: k, region: eu-west-1}", "`region` and `endpoint_url` apply only with"),
    ("{raw: encrypted, kms_key: alias/a, endpoint_url: 'http://kms.invalid:4566'}",
     "dead-letter KMS key: HTTP connection to kms.invalid is not encrypted (http://); use an https:// "
     "endpoint URL for KMS, or set `allow_insecure: true`"),
])
def test_job_file_dead_letter_settings_are_checked_at_load(tmp_path, monkeypatch, dead_letter, message):
    monkeypatch.delenv("AWS_ENDPOINT_URL_KMS", raising=False)
    path = tmp_path / "sealed.yaml"
    path.write_text(JOB.format(dead_letter=dead_letter))
    with pytest.raises(JobFileError) as caught:
        load_job(path)
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_kms_endpoint_from_the_environment_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://kms.invalid:4566")
    path = tmp_path / "sealed.yaml"
    path.write_text(JOB.format(dead_letter="{raw: encrypted, kms_key: alias/a, region: us-east-1}"))
    with pytest.raises(EtlError, match="dead-letter KMS key: HTTP connection to kms.invalid "
                                       r"\(from AWS_ENDPOINT_URL_KMS\) is not encrypted"):
        load_job(path)
