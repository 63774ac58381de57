"""One creator of a new store on object storage: a claim object written with ``If-None-Match``.

Icechunk's repository creation is not safe against a second creator at the same moment on
every S3 implementation (both "succeed", and the commits of the one whose branch ref was
overwritten are lost). Before creating a store at ``s3://bucket/prefix`` a writer therefore
puts the object ``prefix.create-claim`` beside it with ``If-None-Match: *``: the one whose
put succeeds creates the store, the others wait (up to the retry budget) until the store
holds its group and then open it. A claim older than :data:`STALE_CLAIM_SECONDS` with no
store behind it (a creator killed half-way) is removed and claimed again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from pipeline.objectstore.access import (
    RETRY_ENV,
    StoreAccessError,
    retry_seconds,
    s3_client,
    with_retries,
)

T = TypeVar("T")

STALE_CLAIM_SECONDS: float = 120.0
"""Age after which a claim with no store behind it is taken over."""
POLL_SECONDS: float = 0.25
"""Pause between two looks at the store by a creator that lost the claim."""


def claim_key(prefix: str) -> str:
    """Key of the claim object of the store at *prefix* (beside it, not in it).

    Examples
    --------
    >>> claim_key("stores/radar.zarr"), claim_key("")
    ('stores/radar.zarr.create-claim', '.create-claim')
    """
    return f"{prefix.rstrip('/')}.create-claim"


def _put_claim(url: str, client, bucket: str, key: str) -> bool:
    """True when this process wrote the claim, False when one exists already."""
    try:
        with_retries(
            url,
            lambda: client.put_object(
                Bucket=bucket, Key=key, Body=uuid.uuid4().hex.encode(), IfNoneMatch="*"
            ),
            "claim the creation of the store",
        )
        return True
    except StoreAccessError as err:
        if "PreconditionFailed" in err.said or "ConditionalRequestConflict" in err.said:
            return False
        raise


def create_once(
    url: str, bucket: str, prefix: str, create: Callable[[], T], created: Callable[[], bool]
) -> T | None:
    """``create()`` when this process wins the claim of *url*; otherwise wait for
    ``created()`` and return None.

    Raises
    ------
    StoreAccessError
        The store did not appear within the retry budget although another writer holds
        the claim (names the claim object to remove when no writer is running).
    """
    client = s3_client()
    key = claim_key(prefix)
    t0 = time.monotonic()
    while True:
        if _put_claim(url, client, bucket, key):
            try:
                return create()
            except BaseException:
                client.delete_object(Bucket=bucket, Key=key)  # the next creator may go on
                raise
        if created():
            return None
        try:
            head = with_retries(
                url, lambda: client.head_object(Bucket=bucket, Key=key), "read the claim"
            )
            age = time.time() - head["LastModified"].timestamp()
        except StoreAccessError as err:
            if "404" not in err.said and "Not Found" not in err.said:
                raise
            continue  # the claim went away: try again
        if age > STALE_CLAIM_SECONDS and not created():
            client.delete_object(Bucket=bucket, Key=key)  # its creator died half-way
            continue
        elapsed = time.monotonic() - t0
        if elapsed > retry_seconds():
            raise StoreAccessError(
                f"{url}: another writer claimed its creation {age:.0f} s ago and it is not "
                f"there after {elapsed:.1f} s (set {RETRY_ENV} to wait longer; if no writer "
                f"is running, delete s3://{bucket}/{key})"
            )
        time.sleep(POLL_SECONDS)
