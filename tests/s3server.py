"""A real S3-compatible server on 127.0.0.1 for the tests: moto in server mode.

Import the fixture into a test module (``from s3server import s3  # noqa: F401``).
It starts one server per test session on a free loopback port, points the
usual AWS environment variables at it (fake credentials, ``AWS_ENDPOINT_URL``)
so that s3fs, boto and pyarrow find it the way they find real S3, and gives
each test a fresh bucket. Nothing leaves the machine.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator

import pytest

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The server's URL; the AWS environment points at it for the whole session."""
    moto_server = pytest.importorskip("moto.server", reason="moto is in the test extra")
    pytest.importorskip("s3fs", reason="s3fs is in the test extra")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in [*_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(_ENV, AWS_ENDPOINT_URL=endpoint)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3(s3_endpoint):
    """A fresh, empty bucket: ``s3.url("out")`` -> ``s3://bucket-N/out``; ``s3.fs`` is s3fs."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    bucket = f"sftprep-test-{next(_buckets)}"
    fs.mkdir(bucket)

    class Bucket:
        name = bucket

        def __init__(self) -> None:
            self.fs = fs

        def url(self, key: str = "") -> str:
            return f"s3://{bucket}/{key}"

        def put(self, key: str, data: bytes) -> str:
            with fs.open(f"{bucket}/{key}", "wb") as f:
                f.write(data)
            return self.url(key)

        def keys(self, prefix: str = "") -> list[str]:
            fs.invalidate_cache()
            return sorted(p[len(bucket) + 1 :] for p in fs.find(f"{bucket}/{prefix}"))

    return Bucket()
