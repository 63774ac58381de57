"""The dask runner of :mod:`pipeline.ingest` (:func:`_compute`); the chunk encoding is the
store's (:mod:`pipeline.store_chunks`).
"""

from __future__ import annotations


def _compute(tasks: list, workers: int, client, on_done=None, consume=None) -> list:
    """Run delayed *tasks* on local threads or a distributed client.

    ``on_done(i)`` is called (in the calling thread) as task ``i`` finishes; with a client,
    ``consume(result)`` (when given) replaces each result as it arrives, in order, and the
    future is released at once (so encoded chunks are not all held at the same time).
    """
    import dask
    import dask.threaded

    # the scheduler function itself, not the name "threads": dask then does not import
    # distributed (~0.2 s) to look for a client
    threads = dask.threaded.get
    if not tasks:
        return []
    if client is not None:
        futures = client.compute(tasks)
        results = []
        for i in range(len(futures)):  # in order: progress may lag, never runs ahead
            result = futures[i].result()
            futures[i] = None
            results.append(consume(result) if consume is not None else result)
            if on_done is not None:
                on_done(i)
        return results
    if on_done is None:
        return list(dask.compute(*tasks, scheduler=threads, num_workers=workers))
    from dask.callbacks import Callback

    index = {t.key: i for i, t in enumerate(tasks)}

    class _Progress(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if key in index:
                on_done(index[key])

    with _Progress():
        return list(dask.compute(*tasks, scheduler=threads, num_workers=workers))
