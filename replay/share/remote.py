"""Archives on S3: ``s3://bucket/key`` locations pushed and pulled through any S3-compatible endpoint.

``replay export s3://team-state/main.replay`` writes the archive to a local
temporary file, then uploads it; ``replay import s3://...`` downloads it to a
temporary file next to the data dir, then imports it as a local archive
(:mod:`replay.share.archive`), so a failed transfer changes nothing.  The endpoint is
``--endpoint-url``, else boto3's own ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``,
else AWS; credentials and region come from boto3's usual chain (the region
defaults to ``us-east-1``).  boto3 is installed with moto.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SourceError, TransportError

__all__ = ["S3Location", "download", "is_remote", "parse_location", "upload"]

logger = logging.getLogger("replay.remote")

SCHEME = "s3://"


def is_remote(location: str) -> bool:
    """Whether ``location`` is an ``s3://`` URL."""
    return str(location).startswith(SCHEME)


class S3Location:
    """``s3://bucket/key``, parsed."""

    def __init__(self, bucket: str, key: str) -> None:
        self.bucket = bucket
        self.key = key

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"


def parse_location(location: str) -> S3Location:
    """Parse ``s3://bucket/key``.

    :raises ConfigError: it is not of that form.
    """
    bucket, _, key = str(location)[len(SCHEME) :].partition("/")
    if not is_remote(location) or not bucket or not key or key.endswith("/"):
        raise ConfigError("ARCHIVE", location, hint="a path, or s3://bucket/key naming one object")
    return S3Location(bucket, key)


def _client(endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=session.region_name or "us-east-1",
        config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"}),
    )


def _explain(location: S3Location, endpoint_url: str | None, exc: Exception) -> Exception:
    """One-line error for a failed transfer."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    where = f"{location} (endpoint {endpoint_url or 'AWS'})"
    if isinstance(exc, NoCredentialsError):
        return ConfigError(
            "AWS credentials", "missing", hint=f"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to reach {where}"
        )
    if isinstance(exc, EndpointConnectionError):
        return TransportError(endpoint_url or "s3", f"cannot reach {where}: {exc}")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey"):
            return SourceError(str(location), f"no archive at {where}: no such key")
        if code == "NoSuchBucket":
            return SourceError(str(location), f"no bucket {location.bucket!r} at {endpoint_url or 'AWS'}")
        return TransportError(endpoint_url or "s3", f"{where}: {code or exc}")
    if isinstance(exc, BotoCoreError):
        return TransportError(endpoint_url or "s3", f"{where}: {exc}")
    return exc


def upload(path: Path, location: str, endpoint_url: str | None = None) -> None:
    """Upload the file at ``path`` to ``location`` (``s3://bucket/key``)."""
    target = parse_location(location)
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(endpoint_url)
    try:
        try:
            client.head_bucket(Bucket=target.bucket)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchBucket"):
                raise ClientError({"Error": {"Code": "NoSuchBucket"}}, "HeadBucket") from None
            raise
        client.upload_file(str(path), target.bucket, target.key)  # multipart for large archives
    except S3UploadFailedError as exc:
        cause = exc.__context__
        raise _explain(target, endpoint_url, cause if isinstance(cause, Exception) else exc) from None
    except (BotoCoreError, ClientError) as exc:
        raise _explain(target, endpoint_url, exc) from None
    logger.info("uploaded %s to %s", path, target)


def download(location: str, path: Path, endpoint_url: str | None = None) -> None:
    """Download ``location`` (``s3://bucket/key``) to ``path`` (whatever is there is replaced)."""
    source = parse_location(location)
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(endpoint_url)
    try:
        client.head_object(Bucket=source.bucket, Key=source.key)  # a missing key is a clear error, not a retry loop
        client.download_file(source.bucket, source.key, str(path))
    except (BotoCoreError, ClientError) as exc:
        Path(path).unlink(missing_ok=True)
        raise _explain(source, endpoint_url, exc) from None
    logger.info("downloaded %s to %s", source, path)
