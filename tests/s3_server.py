"""An S3 API of our own on 127.0.0.1: moto's standalone server (``moto[server]``, a dev dependency),
started as a subprocess for a test session (tests/test_s3.py) or a soak (tests/soak/chaos.py).

``s3_server()`` yields an ``S3Server``: the endpoint, a user's access key that the server checks (its
IAM authentication is on, so wrong credentials are refused as a real S3 refuses them) and a bucket.
``S3Server.env`` is the environment a genopt process needs to reach it; it is never set in the test
process's own environment, so nothing else sees it.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REGION = "us-east-1"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
# moto answers this many requests without checking credentials, then checks every one: the three
# IAM calls that make the user and its key below.
SETUP_REQUESTS = 3


class S3Unavailable(Exception):
    """moto's server did not start; the message says why."""


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """What a process needs in its environment to reach this server as the bucket's user."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    @functools.cached_property
    def client(self):
        """A boto3 S3 client of the bucket's user, for the test to look inside the bucket."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in the bucket."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server(bucket: str = "genopt-test") -> Iterator[S3Server]:
    """moto's server on a free port of 127.0.0.1, with a user, its access key and ``bucket``.

    Raises:
        S3Unavailable: the server did not answer within 30 s.
    """
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    env = os.environ | {"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(server, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise S3Unavailable(f"moto_server did not start: {log.read()[-300:]}")
                time.sleep(0.2)
            anyone = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
            iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, **anyone)
            iam.create_user(UserName="genopt")
            key = iam.create_access_key(UserName="genopt")["AccessKey"]
            iam.put_user_policy(UserName="genopt", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
            s3 = S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], bucket)
            s3.client.create_bucket(Bucket=bucket)
            yield s3
            s3.client.close()
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
