"""Object storage (``s3://`` stores): errors told in one line and bounded retries.

:mod:`pipeline.objectstore.access` classifies what an S3-compatible server (or the network
in front of it) answered into *permanent* errors (a missing bucket, refused credentials)
and *transient* ones (connection refused or reset, 5xx, throttling), retries the transient
ones with backoff for ``NOWCAST_STORE_RETRY_SECONDS`` (default 60 s), and raises
:class:`StoreAccessError` (a ``ValueError``: the CLI answers it with one ``error:`` line and
exit code 2) naming the location, what the server said and how long it tried.
"""

from pipeline.objectstore.access import (
    DEFAULT_RETRY_SECONDS,
    RETRY_ENV,
    StoreAccessError,
    check_bucket,
    describe_storage_error,
    retry_seconds,
    storage_error,
    with_retries,
)

__all__ = [
    "DEFAULT_RETRY_SECONDS",
    "RETRY_ENV",
    "StoreAccessError",
    "check_bucket",
    "describe_storage_error",
    "retry_seconds",
    "storage_error",
    "with_retries",
]
