"""The S3 backend against a real S3 HTTP endpoint on loopback (moto's standalone server),
through the same code path as AWS S3 or MinIO: Object Lock in COMPLIANCE mode on every
object, conditional puts, first-version reads; the server's credentials cannot destroy."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from phivault.backup.backends.s3 import S3Options
from phivault.backup.operations import backup_now
from phivault.backup.prune import RetentionPolicy, prune
from phivault.backup.repository import SNAPSHOTS
from phivault.backup.restore import restore_snapshot
from phivault.backup.verify import verify_repository
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.errors import AppendOnlyViolation, PruneRefused
from phivault.vault import init_data_dir
from tests.backup.support import clinic, load, open_with, repository, setup_repo, snapshot_of

BUCKET = "phivault-backups"
SERVER = {"access_key_id": "server-key", "secret_access_key": "server-secret"}
OPERATOR = {"access_key_id": "operator-key", "secret_access_key": "operator-secret"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="admin",
        aws_secret_access_key="admin",
    )
    client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    client.close()
    try:
        yield endpoint
    finally:
        server.stop()


def _options(endpoint: str, creds: dict[str, str]) -> S3Options:
    return S3Options(endpoint_url=endpoint, region="us-east-1", retention_days=3, **creds)


def _raw(endpoint: str, creds: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
    )


def test_backup_and_restore_through_s3(s3_endpoint: str, tmp_path: Path) -> None:
    kek = tmp_path / "kek.key"
    create_key_file(kek)
    init_data_dir(tmp_path / "data", KeyFileKeySource(kek))
    vault = open_with(tmp_path / "data", kek)
    server = {"s3": _options(s3_endpoint, SERVER)}
    try:
        load(vault, clinic(6))
        before = snapshot_of(vault)
        url = f"s3://{BUCKET}/clinic-{tmp_path.name}"
        key = setup_repo(vault, url, tmp_path / "backup.key", 256 * 1024, **server)
        first = backup_now(vault, **server)
        second = backup_now(vault, full=True, **server)  # standalone: prune may forget first
        assert second.new_chunks < first.new_chunks  # deduplicated across snapshots
    finally:
        vault.close()
    repo = repository(tmp_path / "data", **server)
    prefix = url.split("/", 3)[3]
    raw = _raw(s3_endpoint, SERVER)

    # Every object carries a COMPLIANCE retention, except the key-sets: the operator must
    # be able to delete those (that is how a crypto-shred reaches backups).
    listed = raw.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    for item in listed:
        head = raw.head_object(Bucket=BUCKET, Key=item["Key"])
        if "/keysets/" in item["Key"]:
            assert "ObjectLockMode" not in head
            continue
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC)
    assert sum("/keysets/" in item["Key"] for item in listed) == 2

    # The server's own backend refuses to replace or delete.
    newest = repo.snapshot_ids()[-1]
    assert repo.backend.create(SNAPSHOTS + newest, b"ransom") is False
    with pytest.raises(AppendOnlyViolation):
        repo.backend.delete(SNAPSHOTS + newest)  # type: ignore[attr-defined]

    # An attacker with the server's credentials goes around phivault: plain overwrites
    # (a new version), delete markers, and deleting the locked versions themselves.
    chunk_key = next(o["Key"] for o in listed if "/chunks/" in o["Key"])
    manifest_key = f"{prefix}/{SNAPSHOTS}{newest}"
    raw.put_object(Bucket=BUCKET, Key=chunk_key, Body=b"encrypted by ransomware")
    raw.put_object(Bucket=BUCKET, Key=manifest_key, Body=b"pay us")
    raw.delete_object(Bucket=BUCKET, Key=chunk_key)  # a delete marker on top
    for key_name in (manifest_key, chunk_key):
        versions = raw.list_object_versions(Bucket=BUCKET, Prefix=key_name)["Versions"]
        original = versions[-1]["VersionId"]  # phivault's own write, under retention
        with pytest.raises(ClientError) as refused:
            raw.delete_object(Bucket=BUCKET, Key=key_name, VersionId=original)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    raw.close()

    # Nothing is lost: reads take the first version of every object.
    assert verify_repository(repo, key, full=True).ok
    restore_snapshot(repo, key, tmp_path / "restored")
    vault = open_with(tmp_path / "restored", kek)
    try:
        assert snapshot_of(vault) == before
    finally:
        vault.close()

    # Prune refuses the server's credentials, and runs with the operator's.
    with pytest.raises(PruneRefused):
        repository(
            tmp_path / "data",
            operator=True,
            s3=_options(s3_endpoint, SERVER),
            server_s3=_options(s3_endpoint, SERVER),
        )
    operator = repository(
        tmp_path / "data",
        operator=True,
        s3=_options(s3_endpoint, OPERATOR),
        server_s3=_options(s3_endpoint, SERVER),
    )
    result = prune(operator, key, RetentionPolicy(keep_last=1))
    assert len(result.forgotten) == 1
    assert result.retained >= 1  # still under COMPLIANCE retention: kept, as intended
    assert len(repo.snapshot_ids()) == 2
