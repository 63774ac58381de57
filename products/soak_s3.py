"""The soak (:mod:`products.soak`) with its radar store on object storage.

:func:`run_object_storage_soak` starts a moto S3 server on 127.0.0.1 (in this process; one
request at a time, :class:`pipeline.objectstore.moto_local.AtomicMotoServer`) and
a :class:`pipeline.objectstore.faultproxy.FaultProxy` in front of it, points the ``AWS_*``
variables at the proxy for the duration of the run, creates a bucket and runs
:func:`products.soak.run_soak` with the store at ``s3://soak/radar.zarr``: every fault of
the local soak plus endpoint outages, slow responses and a concurrent writer
(:data:`products.soak.OBJECT_STORAGE_FAULTS`). The site and its forecast archive stay in
the work directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from products.soak import SoakReport, run_soak

__all__ = ["SOAK_BUCKET", "moto_endpoint", "run_object_storage_soak"]

SOAK_BUCKET: str = "soak"
"""Bucket of the soak's store."""


@contextlib.contextmanager
def moto_endpoint() -> Iterator[object]:
    """A moto S3 server on 127.0.0.1 behind a fault proxy; yields the proxy.

    The ``AWS_*`` variables point at the proxy (fake credentials, ``us-east-1``) inside the
    block and are restored after it. Needs the ``moto[server]`` package.
    """
    import boto3

    from pipeline.objectstore.access import forget_checks
    from pipeline.objectstore.faultproxy import FaultProxy
    from pipeline.objectstore.moto_local import AtomicMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = AtomicMotoServer()  # conditional writes atomic, as on S3
    server.start()
    proxy = FaultProxy(server.get_host_and_port()).start()
    env = {
        "AWS_ENDPOINT_URL": proxy.url,
        "AWS_ACCESS_KEY_ID": "soak",
        "AWS_SECRET_ACCESS_KEY": "soak",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_ENDPOINT_URL_S3"]}
    os.environ.update(env)
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    forget_checks()
    try:
        boto3.client("s3", endpoint_url=proxy.url).create_bucket(Bucket=SOAK_BUCKET)
        yield proxy
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        forget_checks()
        proxy.stop()
        server.stop()


def run_object_storage_soak(workdir: str | os.PathLike, **kwargs) -> SoakReport:
    """:func:`products.soak.run_soak` with the store in a moto bucket behind a fault proxy.

    Parameters
    ----------
    workdir : path
        New or empty directory for the archives and the site.
    **kwargs
        Other arguments of :func:`products.soak.run_soak` (``cycles``, ``seed``, ``rate``,
        ``faults``, ...).

    Returns
    -------
    SoakReport
        Its ``faults`` also count ``outage``, ``slow`` and ``rival``.
    """
    with moto_endpoint() as proxy:
        return run_soak(workdir, store=f"s3://{SOAK_BUCKET}/radar.zarr", proxy=proxy, **kwargs)
