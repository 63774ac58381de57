"""What an S3-compatible server answered, in one line, and bounded retries of transient faults.

Two kinds of failure reach a store on object storage:

- **permanent**: the bucket does not exist (``NoSuchBucket``), the credentials are refused
  (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``, ``AccessDenied``), no credentials at
  all. Retrying cannot help: :class:`StoreAccessError` at once.
- **transient**: nothing listens on the endpoint, the connection is reset or times out,
  the server answers 5xx or throttles (``SlowDown``, ``503``). These are retried with
  exponential backoff (0.2 s doubling up to 5 s, jittered) until ``NOWCAST_STORE_RETRY_SECONDS``
  (default 60 s) have passed; the final :class:`StoreAccessError` says how long it tried.

The errors come from Icechunk (``icechunk.IcechunkError``, whose text carries the AWS SDK's
error chain) and from boto3 (``botocore`` exceptions; the small objects beside a store).
:func:`storage_error` reads both; ``icechunk.ConflictError`` (another writer committed) is
not a storage fault and is left to the writers (:mod:`pipeline.store`).

:func:`check_bucket` is the cheap first request made before a store on object storage is
opened or created (:func:`pipeline.store_engine._storage`): one ``ListObjectsV2`` of at most
one key under the store's prefix, with the retries above, so that a wrong bucket, wrong
credentials or a dead endpoint are told in one line within the retry budget instead of
after Icechunk's own slower retries. A success is remembered for :data:`CHECK_TTL_SECONDS`.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

RETRY_ENV: str = "NOWCAST_STORE_RETRY_SECONDS"
"""Environment variable: seconds transient object-storage faults are retried (0: one try)."""
DEFAULT_RETRY_SECONDS: float = 60.0
"""Retry budget when :data:`RETRY_ENV` is not set."""
CHECK_TTL_SECONDS: float = 30.0
"""How long a successful :func:`check_bucket` of a bucket is trusted (per process)."""
FIRST_DELAY: float = 0.2
"""Seconds before the first retry; doubled after each, up to :data:`MAX_DELAY`."""
MAX_DELAY: float = 5.0
"""Longest wait between two tries (seconds)."""

_PERMANENT_HINTS: dict[str, str] = {
    "NoSuchBucket": "the bucket does not exist",
    "InvalidAccessKeyId": "the credentials were refused",
    "SignatureDoesNotMatch": "the credentials were refused",
    "AccessDenied": "access was denied",
    "InvalidBucketName": "the bucket name is not valid",
    "AllAccessDisabled": "access was denied",
}
_TRANSIENT_CODES: frozenset[str] = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
        "502",
        "504",
    }
)
_TRANSIENT_TEXT: tuple[str, ...] = (
    "dispatch failure",
    "connection refused",
    "connection reset",
    "connection closed",
    "broken pipe",
    "timed out",
    "timeout",
    "io error",
    "throttl",
    "slow down",
    "service unavailable",
    "internal error",
    "response error",
)
_STORAGE_TEXT: tuple[str, ...] = ("object store", "dispatch failure", "service error", "s3")
_CODE_RE = re.compile(r'code: (?:Some\()?"([^"]+)"\)?(?:, message: (?:Some\()?"([^"]*)")?')
_STATUS_RE = re.compile(r"(?:status(?:_code)?|StatusCode)\W{0,3}(\d{3})", re.IGNORECASE)

_checked: dict[tuple[str | None, str], float] = {}


class StoreAccessError(ValueError):
    """A store on object storage could not be reached, or refused the request.

    A ``ValueError``: the ``nowcast`` commands answer it with one ``error:`` line and exit
    code 2 (:mod:`flows._cli_errors`). ``transient`` is True when the last fault was one
    that retrying could have cured (the retry budget ran out); ``said`` is what the server
    or the network said (the message without location and retry counts).
    """

    def __init__(self, message: str, *, transient: bool = False, said: str | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.said = said or message


@dataclass(frozen=True)
class StorageFault:
    """What the server or the network answered: one line, and whether a retry may help."""

    said: str
    transient: bool


def retry_seconds() -> float:
    """The retry budget in seconds: ``NOWCAST_STORE_RETRY_SECONDS`` or 60.

    Raises
    ------
    ValueError
        If the variable is set to something that is not a number of seconds >= 0.
    """
    raw = os.environ.get(RETRY_ENV, "").strip()
    if not raw:
        return DEFAULT_RETRY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{RETRY_ENV}={raw!r}: expected a number of seconds >= 0")
    return value


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _said(code: str | None, message: str | None, fallback: str) -> str:
    if code is None:
        return fallback
    hint = _PERMANENT_HINTS.get(code)
    told = f"{code}: {message}" if message else code
    return f"{hint} ({told})" if hint else told


def _icechunk_fault(text: str) -> StorageFault | None:
    low = text.lower()
    if not any(word in low for word in _STORAGE_TEXT):
        return None
    lines = [ln.strip().lstrip("|`->x ").strip() for ln in text.strip().splitlines()]
    lines = [ln for ln in lines if ln]
    last = lines[-1] if lines else text.strip()
    match = _CODE_RE.search(text)
    code, message = (match.group(1), match.group(2)) if match else (None, None)
    if code is not None and code in _PERMANENT_HINTS:
        return StorageFault(_said(code, message, last), transient=False)
    status = _STATUS_RE.search(text)
    transient = (
        (code is not None and code in _TRANSIENT_CODES)
        or (status is not None and status.group(1).startswith("5"))
        or (status is not None and status.group(1) == "429")
        or any(word in low for word in _TRANSIENT_TEXT)
    )
    said = _said(code, message, last) if code is not None else last
    if status is not None and code is None:
        said = f"HTTP {status.group(1)} ({last})"
    return StorageFault(said, transient=transient)


def _botocore_fault(err: BaseException) -> StorageFault | None:
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - boto3 is a dependency of the project
        return None
    if isinstance(err, bx.ClientError):
        info = err.response.get("Error", {})
        code = str(info.get("Code") or "")
        message = info.get("Message") or ""
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        transient = code in _TRANSIENT_CODES or status >= 500 or status == 429
        if not code:
            code = str(status)
        return StorageFault(_said(code, message, str(err)), transient=transient)
    if isinstance(err, bx.NoCredentialsError | bx.PartialCredentialsError):
        return StorageFault(
            f"no usable credentials ({err}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            transient=False,
        )
    if isinstance(err, bx.ConnectionError | bx.HTTPClientError):
        return StorageFault(" ".join(str(err).split()), transient=True)
    return None


def storage_error(err: BaseException) -> StorageFault | None:
    """The object-storage fault *err* reports, or None when it is not one.

    Parameters
    ----------
    err : BaseException
        An ``icechunk.IcechunkError`` (not a ``ConflictError``), a ``botocore`` error, or
        anything else (None).

    Returns
    -------
    StorageFault or None
        ``said``: one line (the S3 error code and message, or the last cause of the
        network error); ``transient``: whether retrying may cure it.
    """
    if isinstance(err, StoreAccessError):
        return StorageFault(err.said, transient=err.transient)
    try:
        import icechunk
    except ImportError:  # pragma: no cover
        icechunk = None
    if icechunk is not None and type(err) is icechunk.IcechunkError:
        return _icechunk_fault(str(err))
    return _botocore_fault(err)


def _where(location: str) -> str:
    endpoint = _endpoint()
    return f"{location} (endpoint {endpoint})" if endpoint else str(location)


def describe_storage_error(err: BaseException, location: str | None = None) -> str | None:
    """One line for an object-storage fault that reached the command line, or None.

    Used by :mod:`flows._cli_errors` for faults raised in the middle of a job (a read or a
    write after the store was opened), where no location was attached.
    """
    if isinstance(err, StoreAccessError):
        return " ".join(str(err).split())
    fault = storage_error(err)
    if fault is None:
        return None
    where = _where(location) if location else f"object storage {_endpoint() or '(AWS)'}"
    kind = "transient fault" if fault.transient else "error"
    return f"{where}: {kind}: {fault.said}"


def with_retries(location: str, fn: Callable[[], T], what: str = "reach the store") -> T:
    """``fn()``, with transient object-storage faults retried for the retry budget.

    Parameters
    ----------
    location : str
        The ``s3://`` location *fn* works on (named in the error).
    fn : callable
        The request(s); called again from the start after a transient fault.
    what : str
        What *fn* does, for the error (``"open the store"``).

    Raises
    ------
    StoreAccessError
        At once for a permanent fault; after the budget (:func:`retry_seconds`) for a
        transient one, saying how long and how many times it tried.
    """
    budget = retry_seconds()
    t0 = time.monotonic()
    delay = FIRST_DELAY
    tries = 0
    while True:
        try:
            return fn()
        except Exception as err:
            fault = storage_error(err)
            if fault is None:
                raise
            tries += 1
            if not fault.transient:
                raise StoreAccessError(
                    f"{_where(location)}: cannot {what}: {fault.said}", said=fault.said
                ) from err
            elapsed = time.monotonic() - t0
            if elapsed + delay > budget:
                raise StoreAccessError(
                    f"{_where(location)}: cannot {what}: {fault.said}; gave up after "
                    f"{elapsed:.1f} s and {tries} {'try' if tries == 1 else 'tries'} "
                    f"(set {RETRY_ENV} to retry longer)",
                    transient=True,
                    said=fault.said,
                ) from err
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(2 * delay, MAX_DELAY)


def s3_client():
    """A boto3 S3 client with the project's endpoint and region, without its own retries
    (:func:`with_retries` retries, for a bounded time)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=_endpoint(),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=30
        ),
    )


def check_bucket(url: str, bucket: str, prefix: str) -> None:
    """One cheap request to *bucket* (``ListObjectsV2``, one key under *prefix*), retried.

    An ``AccessDenied`` answer is no verdict (credentials may be allowed to read and write
    the store's objects without listing the bucket): Icechunk's own requests then tell.

    Raises
    ------
    StoreAccessError
        The bucket is missing, the credentials are refused, or the endpoint stayed
        unreachable for the retry budget.
    """
    key = (_endpoint(), bucket)
    seen = _checked.get(key)
    if seen is not None and time.monotonic() - seen < CHECK_TTL_SECONDS:
        return
    client = s3_client()
    try:
        with_retries(
            url,
            lambda: client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1),
            what="reach the bucket",
        )
    except StoreAccessError as err:
        if err.said.startswith(_PERMANENT_HINTS["AccessDenied"]):
            return  # credentials without s3:ListBucket may still read and write the store
        raise
    _checked[key] = time.monotonic()


def forget_checks() -> None:
    """Forget the successful :func:`check_bucket` calls (the next one asks the server)."""
    _checked.clear()
