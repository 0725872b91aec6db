"""Where a study's artifacts live, from one ``--artifact-store`` value: a folder, or an S3 bucket.

- A plain path (or ``file://PATH``) is a folder, Optuna's ``FileSystemArtifactStore``: every machine
  that mounts it sees the same ids.
- ``s3://BUCKET/PREFIX`` is S3-compatible object storage through Optuna's ``Boto3ArtifactStore``,
  for workers that share nothing but the study's database and the bucket. The endpoint and the
  credentials come from boto3's usual chain (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY``, ``~/.aws``), so AWS, MinIO and Ceph all work. boto3 is the ``s3`` extra.

The study records ``ArtifactLocation.url``: the folder, resolved, or the ``s3://`` URL without any
credentials (``s3://KEY:SECRET@BUCKET/...`` is accepted, used for this process and its local workers
through the environment, and never written down).

An S3 store is checked before a study is touched: one ``ListObjectsV2`` with bounded connect and
read timeouts and no retries, so a missing bucket, wrong credentials or an endpoint that refuses or
never answers are refused in one line within seconds. Later calls have longer timeouts and a retry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from genopt import paths
from genopt.errors import GenoptError

SCHEMES = ("s3", "file")
# The check before a study starts: connect and read timeouts (seconds), one attempt each.
CHECK_CONNECT_TIMEOUT, CHECK_READ_TIMEOUT = 3, 4
# Uploads and reads during a study: a checkpoint is a few MB; one retry rides out a blip.
CONNECT_TIMEOUT, READ_TIMEOUT, ATTEMPTS = 5, 60, 2


@dataclasses.dataclass(frozen=True)
class ArtifactLocation:
    """A parsed ``--artifact-store`` value.

    ``folder`` for a folder store; ``bucket`` and ``prefix`` (empty, or ending in ``/``) for S3.
    ``credentials`` is the ``KEY:SECRET`` a URL carried, kept out of ``url``.
    """

    url: str
    folder: Path | None = None
    bucket: str | None = None
    prefix: str = ""
    credentials: tuple[str, str] | None = dataclasses.field(default=None, repr=False)

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    @classmethod
    def parse(cls, value: str | os.PathLike | None) -> ArtifactLocation:
        """``value`` as a location; None is the default folder (``storage/artifacts``).

        Raises:
            GenoptError: a URL scheme genopt does not know, or an S3 URL without a bucket.
        """
        if value is None:
            return cls._folder(paths.artifacts_dir())
        text = os.fspath(value)
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # a path (or a Windows drive)
            return cls._folder(Path(text))
        if scheme == "file":
            return cls._folder(Path(unquote(parts.path)))
        if scheme != "s3":
            raise GenoptError(
                f"--artifact-store {_redacted(text)}: unknown scheme {parts.scheme + '://'!r}; "
                "use a folder path or s3://BUCKET/PREFIX"
            )
        bucket = parts.hostname
        if not bucket:
            raise GenoptError(f"--artifact-store {_redacted(text)}: no bucket; use s3://BUCKET/PREFIX")
        prefix = parts.path.strip("/")
        prefix = f"{prefix}/" if prefix else ""
        credentials = None
        if parts.username is not None:
            if not parts.password:
                raise GenoptError(
                    f"--artifact-store {_redacted(text)}: credentials in the URL need KEY:SECRET@; "
                    "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
                )
            credentials = (unquote(parts.username), unquote(parts.password))
        return cls(f"s3://{bucket}/{prefix}", bucket=bucket, prefix=prefix, credentials=credentials)

    @classmethod
    def _folder(cls, folder: Path) -> ArtifactLocation:
        folder = folder.expanduser().resolve()
        return cls(str(folder), folder=folder)

    def environment(self) -> dict[str, str]:
        """What a local worker process needs in its environment to reach the store as this one does."""
        if self.credentials is None:
            return {}
        return {"AWS_ACCESS_KEY_ID": self.credentials[0], "AWS_SECRET_ACCESS_KEY": self.credentials[1]}


def _redacted(text: str) -> str:
    """``text`` with the password of a URL's ``user:password@`` replaced, for messages."""
    parts = urlsplit(text)
    if parts.password is None:
        return text
    return text.replace(f":{parts.password}@", ":***@", 1)


class S3ArtifactStore:
    """Optuna's ``Boto3ArtifactStore`` under a key prefix, read into memory (``torch.load`` seeks).

    The artifact store protocol (``open_reader``, ``write``, ``remove``) that Optuna, optuna-dashboard
    and genopt use. An upload is one ``PutObject`` (or a multipart upload completed at the end), so
    an object is whole or absent: a worker killed mid-upload leaves nothing under the id.
    """

    def __init__(self, location: ArtifactLocation, client) -> None:
        from optuna.artifacts import Boto3ArtifactStore

        self.location = location
        self.client = client
        self._store = Boto3ArtifactStore(location.bucket, client=client)

    def key(self, artifact_id: str) -> str:
        return self.location.prefix + artifact_id

    def open_reader(self, artifact_id: str) -> BinaryIO:
        with self._store.open_reader(self.key(artifact_id)) as body:
            return io.BytesIO(body.read())

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._store.write(self.key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(self.key(artifact_id))

    def exists(self, artifact_id: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.location.bucket, Key=self.key(artifact_id))
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise
        return True

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.location.url!r})"


def artifact_exists(store, artifact_id: str) -> bool:
    """Whether ``store`` holds ``artifact_id``, without reading it whole."""
    if isinstance(store, S3ArtifactStore):
        return store.exists(artifact_id)
    try:
        store.open_reader(artifact_id).close()
    except ArtifactNotFound:
        return False
    return True


def artifact_store(value: str | os.PathLike | ArtifactLocation | None = None, *, check: bool = True):
    """The artifact store at ``value`` (a folder path, ``s3://BUCKET/PREFIX``, or None: the default
    folder). A folder is created; an S3 bucket is checked (``check``) with one bounded request.

    Raises:
        GenoptError: an unknown scheme, boto3 not installed, or an S3 store that cannot be used:
            no such bucket, credentials refused, endpoint unreachable (one line each).
    """
    location = value if isinstance(value, ArtifactLocation) else ArtifactLocation.parse(value)
    if not location.is_s3:
        location.folder.mkdir(parents=True, exist_ok=True)
        return FileSystemArtifactStore(location.folder)
    if check:
        check_s3(location)
    return S3ArtifactStore(location, _client(location, CONNECT_TIMEOUT, READ_TIMEOUT, ATTEMPTS))


def _client(location: ArtifactLocation, connect: float, read: float, attempts: int):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise GenoptError(f"--artifact-store {location.url} needs boto3: pip install 'genopt[s3]'") from None
    config = Config(
        connect_timeout=connect,
        read_timeout=read,
        retries={"total_max_attempts": attempts, "mode": "standard"},
    )
    keys = {}
    if location.credentials is not None:
        keys = {
            "aws_access_key_id": location.credentials[0],
            "aws_secret_access_key": location.credentials[1],
        }
    # A region is needed to sign requests; S3-compatible servers ignore it.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.session.Session().client("s3", config=config, region_name=region, **keys)


def check_s3(location: ArtifactLocation) -> None:
    """One ``ListObjectsV2`` under the prefix, within about ``CHECK_CONNECT_TIMEOUT + CHECK_READ_TIMEOUT``
    seconds, so a store that cannot work is refused before anything is stored.

    Raises:
        GenoptError: what is wrong, in one line.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    client = _client(location, CHECK_CONNECT_TIMEOUT, CHECK_READ_TIMEOUT, 1)
    endpoint = client.meta.endpoint_url
    where = f"--artifact-store {location.url}"
    try:
        with contextlib.closing(client):
            client.list_objects_v2(Bucket=location.bucket, Prefix=location.prefix, MaxKeys=1)
    except NoCredentialsError:
        raise GenoptError(
            f"{where}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or ~/.aws)"
        ) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, status = error.get("Code", ""), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket" or status == 404:
            raise GenoptError(
                f"{where}: no bucket {location.bucket!r} at {endpoint}: create it first"
            ) from None
        if status in (401, 403):
            raise GenoptError(
                f"{where}: access denied at {endpoint} ({code or status}): check the credentials "
                "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and the bucket's permissions"
            ) from None
        raise GenoptError(f"{where}: {code or status} at {endpoint}: {error.get('Message', exc)}") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise GenoptError(
            f"{where}: endpoint {endpoint} did not answer ({type(exc).__name__}): "
            "check AWS_ENDPOINT_URL and that the server is up"
        ) from None
    except BotoCoreError as exc:
        raise GenoptError(f"{where}: {endpoint}: {exc}") from None
