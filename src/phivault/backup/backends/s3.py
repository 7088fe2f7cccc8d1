"""A repository in S3-compatible object storage (AWS S3, MinIO, Ceph RGW...) with Object Lock.

The bucket must have Object Lock enabled (which implies versioning). Every object is put
with a COMPLIANCE-mode retention: until that date nobody, not the server, not the
operator, not the account's root user, can delete or shorten it. Puts are conditional
(`If-None-Match: *`), so an existing name is never replaced; and because a versioned
bucket keeps every version, reads take the *first* version of a key: a later
overwrite (a PUT without the condition, or a delete marker) made with stolen server
credentials changes nothing that a restore reads.

The server's credentials need s3:PutObject, s3:GetObject, s3:GetObjectVersion,
s3:ListBucket, s3:ListBucketVersions and s3:PutObjectRetention (COMPLIANCE retention can
only be extended); never s3:DeleteObject*. `backup prune` uses the operator's own
credentials, which may delete versions whose retention has expired.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from phivault.backup.backends.base import check_name
from phivault.errors import AppendOnlyViolation, BackupError, ConfigError, PruneRefused

log = logging.getLogger("phivault.backup")

DEFAULT_RETENTION_DAYS = 30
_PROTECT_THREADS = 8


@dataclass(frozen=True, slots=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    profile: str | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS

    @classmethod
    def from_env(cls, *, operator: bool = False, **overrides: Any) -> S3Options:
        """Options from PHIVAULT_BACKUP_S3_{ENDPOINT,REGION,ACCESS_KEY_ID,SECRET_ACCESS_KEY,
        PROFILE,RETENTION_DAYS}, then `overrides`. With `operator`, the credentials come
        from PHIVAULT_BACKUP_OPERATOR_{ACCESS_KEY_ID,SECRET_ACCESS_KEY,PROFILE} instead."""
        env = {k: os.environ.get("PHIVAULT_BACKUP_S3_" + k.upper()) or None for k in _ENV_FIELDS}
        if operator:
            for name in ("access_key_id", "secret_access_key", "profile"):
                env[name] = os.environ.get("PHIVAULT_BACKUP_OPERATOR_" + name.upper()) or None
        values: dict[str, Any] = {
            "endpoint_url": env["endpoint"],
            "region": env["region"],
            "access_key_id": env["access_key_id"],
            "secret_access_key": env["secret_access_key"],
            "profile": env["profile"],
        }
        if env["retention_days"]:
            values["retention_days"] = int(env["retention_days"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_ENV_FIELDS = (
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "profile",
    "retention_days",
)


def _client(options: S3Options) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        profile_name=options.profile,
        region_name=options.region or "us-east-1",
    )
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=_PROTECT_THREADS * 2
    )
    return session.client("s3", endpoint_url=options.endpoint_url, config=config)


def access_key_of(options: S3Options) -> str | None:
    """The access key id these options resolve to (to tell operator from server)."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        profile_name=options.profile,
    )
    credentials = session.get_credentials()
    return None if credentials is None else str(credentials.access_key)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Backend:
    """AppendOnlyBackend over s3://bucket/prefix."""

    operator = False

    def __init__(self, url: str, options: S3Options | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError("an S3 repository is written s3://bucket/prefix")
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.options = options or S3Options.from_env()
        if self.options.retention_days < 1:
            raise ConfigError("the S3 retention must be at least one day")
        self._s3 = _client(self.options)

    def _key(self, name: str) -> str:
        name = check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError:
            raise
        except BotoCoreError as exc:
            raise BackupError(f"cannot {what} the S3 backup repository") from exc

    def retain_until(self) -> datetime:
        return datetime.now(UTC) + timedelta(days=self.options.retention_days)

    def create(self, name: str, data: bytes, *, retain: bool = True) -> bool:
        from botocore.exceptions import ClientError

        lock: dict[str, Any] = {}
        if retain:
            lock = {
                "ObjectLockMode": "COMPLIANCE",
                "ObjectLockRetainUntilDate": self.retain_until(),
            }
        try:
            self._call(
                "write to",
                self._s3.put_object,
                Key=self._key(name),
                Body=data,
                IfNoneMatch="*",  # never replace: the put fails if the key exists
                **lock,
            )
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                return False
            raise BackupError("cannot write to the S3 backup repository") from exc
        return True

    def _versions(self, key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        paginator = self._s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            found.extend(v for v in page.get("Versions", []) if v["Key"] == key)
        return found

    def read(self, name: str) -> bytes | None:
        from botocore.exceptions import ClientError

        key = self._key(name)
        try:
            versions = self._versions(key)
            if not versions:
                return None
            if len(versions) > 1:
                # Only a put without our condition (not phivault) makes a second version.
                log.warning("backup object has %d versions; reading the first", len(versions))
            # S3 lists the versions of a key newest first: the last one is the original.
            first = versions[-1]["VersionId"]
            reply = self._call("read", self._s3.get_object, Key=key, VersionId=first)
            return bytes(reply["Body"].read())
        except ClientError as exc:
            raise BackupError("cannot read the S3 backup repository") from exc

    def list(self, prefix: str) -> Iterator[str]:
        from botocore.exceptions import ClientError

        base = (
            self._key(prefix.rstrip("/")) + "/"
            if prefix
            else (self.prefix + "/" if self.prefix else "")
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        seen: set[str] = set()
        try:
            # Versions, not current objects: a delete marker must not hide an object.
            paginator = self._s3.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
                for version in page.get("Versions", []):
                    name = version["Key"][strip:]
                    if name not in seen:
                        seen.add(name)
                        yield name
        except ClientError as exc:
            raise BackupError("cannot list the S3 backup repository") from exc

    def protect(self, names: Iterable[str], until: datetime) -> None:
        from botocore.exceptions import ClientError

        def extend(name: str) -> None:
            key = self._key(name)
            for version in self._versions(key):
                self._s3.put_object_retention(
                    Bucket=self.bucket,
                    Key=key,
                    VersionId=version["VersionId"],
                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
                )

        try:
            with ThreadPoolExecutor(_PROTECT_THREADS) as pool:
                list(pool.map(extend, names))
        except ClientError as exc:
            raise BackupError("cannot extend the retention of S3 backup objects") from exc

    def flush(self) -> None:
        return None  # a completed PUT is durable

    def delete(self, name: str) -> bool:
        raise AppendOnlyViolation()

    def close(self) -> None:
        self._s3.close()


class S3OperatorBackend(S3Backend):
    """Opened by `backup prune` with the operator's credentials."""

    operator = True

    def __init__(
        self, url: str, options: S3Options | None = None, server: S3Options | None = None
    ) -> None:
        options = options or S3Options.from_env(operator=True)
        mine = access_key_of(options) if options.access_key_id or options.profile else None
        theirs = access_key_of(server or S3Options.from_env())
        if mine is None or mine == theirs:
            # Same key as the server's (or none given): the server must never be able
            # to prune, so neither may anyone holding only its credentials.
            raise PruneRefused()
        super().__init__(url, options)

    def delete(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        key = self._key(name)
        kept = False
        for version in self._versions(key):
            try:
                self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version["VersionId"])
            except ClientError as exc:
                if _code(exc) != "AccessDenied":
                    raise BackupError("cannot delete from the S3 backup repository") from exc
                kept = True  # COMPLIANCE retention not yet expired: it stays, as intended
        return not kept
