"""Envelope encryption of the raw records kept in dead letters (`dead_letter: {raw: encrypted}`).

A dead letter always carries the record as the mapping's PII transforms left it. With `raw: encrypted`
it also carries the record as the source gave it, sealed: each dead-letter store (one per run and
process) asks for one data key when it first needs one, AWS KMS `GenerateDataKey` (AES-256) under the
job's `kms_key`, and seals every raw record with AES-GCM under that data key. Beside each ciphertext
the entry holds the data key as KMS encrypted it, so whoever may call `kms:Decrypt` on the key can
read the record and nobody else can: the plaintext data key never leaves memory.

    "raw_record": {"alg": "AES-256-GCM", "key_id": "<KMS key ARN>", "encrypted_key": "<base64>",
                   "nonce": "<base64>", "ciphertext": "<base64>"}

The KMS encryption context is `{"etl:job": <job name>}`; the AES-GCM associated data binds the
ciphertext to its entry's job, table, stage and source key, so a sealed record moved to another
entry does not open.

`LocalKeys` wraps data keys with a 32-byte key read from a file instead of KMS: for tests and
air-gapped machines only, since whoever can read that file can read every raw record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from etl import security
from etl.errors import EtlError, JobFileError

ALGORITHM = "AES-256-GCM"
KEY_BYTES = 32
NONCE_BYTES = 12


class SealError(EtlError):
    """A raw record could not be sealed or opened (no key, wrong key, KMS refused, damaged entry)."""

    exit_code = 3


@dataclass(frozen=True)
class DataKey:
    plaintext: bytes
    """The AES-256 key itself; kept in memory only."""
    encrypted: bytes
    """The same key encrypted under the key provider's key: stored beside each ciphertext."""
    key_id: str
    """Which key encrypted it (the KMS key ARN, or `local:<fingerprint>`)."""


class KeyProvider(Protocol):
    def new_data_key(self, context: dict[str, str]) -> DataKey: ...
    def open_data_key(self, encrypted: bytes, key_id: str, context: dict[str, str]) -> bytes: ...


class KmsKeys:
    """Data keys from AWS KMS: `GenerateDataKey` to seal, `Decrypt` to open. The client is made on first
    use, and its endpoint (the job's `endpoint_url`, AWS_ENDPOINT_URL_KMS, the AWS config...) must pass
    the connection policy of `etl/security.py` before the first request."""

    def __init__(self, key_id: str, *, region: str | None = None, endpoint_url: str | None = None,
                 allow_insecure: bool = False, client: Any = None) -> None:
        self.key_id = key_id
        self.region = region
        self.endpoint_url = endpoint_url
        self.allow_insecure = allow_insecure
        self._client = client
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # a boto3 client is not picklable (Dask workers): an unpickled copy makes its own
        return {"key_id": self.key_id, "region": self.region, "endpoint_url": self.endpoint_url,
                "allow_insecure": self.allow_insecure}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state.pop("key_id"), **state)  # type: ignore[misc]

    def _kms(self) -> Any:
        with self._lock:
            if self._client is None:
                from etl.aws_session import boto3_session

                session = boto3_session(self.region)
                client = session.client("kms", endpoint_url=self.endpoint_url)
                endpoint = security.aws_client_endpoint(client, "KMS", self.endpoint_url, session)
                if security.verdict(endpoint, self.allow_insecure) == "refuse":
                    raise SealError(security.refusal("dead-letter KMS key", endpoint))
                self._client = client
            return self._client

    def _call(self, operation: str, **request: Any) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._kms(), operation)(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            action = "GenerateDataKey" if operation == "generate_data_key" else "Decrypt"
            raise SealError(
                f"dead letters: KMS {action} with key {request.get('KeyId', self.key_id)!r} failed: {code}",
                hint=f"check the key id, the region and that the caller may call kms:{action} on the key",
            ) from None
        except BotoCoreError as error:
            raise SealError(f"dead letters: KMS could not be reached: {type(error).__name__}",
                            hint="check AWS credentials, region and endpoint") from None

    def new_data_key(self, context: dict[str, str]) -> DataKey:
        response = self._call("generate_data_key", KeyId=self.key_id, KeySpec="AES_256",
                              EncryptionContext=context)
        return DataKey(response["Plaintext"], response["CiphertextBlob"], response["KeyId"])

    def open_data_key(self, encrypted: bytes, key_id: str, context: dict[str, str]) -> bytes:
        if key_id.startswith("local:"):
            raise SealError(f"dead letters: this raw record was sealed with a local key file ({key_id}), "
                            "not with KMS", hint="open it with the key file it was sealed with")
        return self._call("decrypt", CiphertextBlob=encrypted, KeyId=key_id,
                          EncryptionContext=context)["Plaintext"]


class LocalKeys:
    """Data keys wrapped with AES-GCM under a 32-byte key read from a file: FOR TESTS AND AIR-GAPPED USE
    ONLY. Anyone who can read the key file can read every raw record sealed with it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            key = self.path.read_bytes()
        except OSError as error:
            raise JobFileError(f"dead_letter.key_file: cannot read {self.path}: {error.strerror}") from None
        if len(key) != KEY_BYTES:
            raise JobFileError(
                f"dead_letter.key_file: {self.path} holds {len(key)} bytes, expected exactly {KEY_BYTES}",
                hint=f"make one with `head -c {KEY_BYTES} /dev/urandom > {self.path.name}`"
                " (for tests and air-gapped use only; use kms_key otherwise)")
        self._key = AESGCM(key)
        self.key_id = "local:" + hashlib.sha256(key).hexdigest()[:16]

    def new_data_key(self, context: dict[str, str]) -> DataKey:
        plaintext = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        return DataKey(plaintext, nonce + self._key.encrypt(nonce, plaintext, _context_bytes(context)),
                       self.key_id)

    def open_data_key(self, encrypted: bytes, key_id: str, context: dict[str, str]) -> bytes:
        if key_id != self.key_id:
            raise SealError(
                f"dead letters: this raw record was sealed with key {key_id}, and the key file {self.path} "
                f"is {self.key_id}", hint="open it with the key it was sealed with")
        try:
            nonce, wrapped = encrypted[:NONCE_BYTES], encrypted[NONCE_BYTES:]
            return self._key.decrypt(nonce, wrapped, _context_bytes(context))
        except InvalidTag:
            raise SealError(f"dead letters: the data key of a raw record does not open with the key file "
                            f"{self.path} (wrong key or damaged entry)") from None


def _context_bytes(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _entry_context(entry: dict) -> bytes:
    """The associated data of one sealed record: the entry's job, table, stage and source key."""
    return _context_bytes({name: str(entry.get(name)) for name in ("job", "table", "stage", "source_key")})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Sealer:
    """Seals the raw records of one dead-letter store under one data key, asked for on first use."""

    def __init__(self, keys: KeyProvider, *, job: str) -> None:
        self.keys = keys
        self.context = {"etl:job": job}
        self._data_key: DataKey | None = None
        self._lock = threading.Lock()

    def seal(self, plaintext: bytes, entry: dict) -> dict:
        """The `raw_record` of `entry` (which already holds job, table, stage and source_key)."""
        with self._lock:
            if self._data_key is None:
                self._data_key = self.keys.new_data_key(self.context)
            data_key = self._data_key
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(data_key.plaintext).encrypt(nonce, plaintext, _entry_context(entry))
        return {"alg": ALGORITHM, "key_id": data_key.key_id, "encrypted_key": _b64(data_key.encrypted),
                "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}


class Opener:
    """Opens sealed raw records; each data key is opened once (one KMS `Decrypt` per run's key)."""

    def __init__(self, keys: KeyProvider) -> None:
        self.keys = keys
        self._opened: dict[tuple[str, str], AESGCM] = {}

    def open(self, entry: dict, where: str) -> bytes:
        """The raw record's JSON bytes; `where` (file:line) names the entry in errors."""
        sealed: Any = entry.get("raw_record")  # not a map: AttributeError or TypeError below, a SealError
        try:
            if sealed.get("alg") != ALGORITHM:
                raise SealError(f"{where}: raw_record: unknown algorithm {sealed.get('alg')!r}")
            key_id, wrapped = str(sealed["key_id"]), str(sealed["encrypted_key"])
            nonce = base64.b64decode(sealed["nonce"], validate=True)
            ciphertext = base64.b64decode(sealed["ciphertext"], validate=True)
            cipher = self._opened.get((key_id, wrapped))
            if cipher is None:
                context = {"etl:job": str(entry.get("job"))}
                data_key = self.keys.open_data_key(base64.b64decode(wrapped, validate=True), key_id, context)
                cipher = self._opened[(key_id, wrapped)] = AESGCM(data_key)
            return cipher.decrypt(nonce, ciphertext, _entry_context(entry))
        except SealError as error:
            raise SealError(f"{where}: {error.message}", hint=error.hint) from None
        except InvalidTag:
            raise SealError(f"{where}: the raw record does not open: its entry (job, table, stage, source "
                            "key) or ciphertext was changed after it was written") from None
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise SealError(f"{where}: raw_record is damaged ({type(error).__name__})") from None
