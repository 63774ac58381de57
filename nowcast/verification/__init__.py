"""Verification that carries its uncertainty: FSS, per-sequence sums, bootstrap intervals.

:mod:`nowcast.verification.fss`
    The fractions skill score as streamed per-frame sums.
:mod:`nowcast.verification.sequences`
    Per-sequence, per-lead sums of every score (what a resample sums) and the scores of
    any sum of them.
:mod:`nowcast.verification.bootstrap`
    Moving-block bootstrap weights, block length, percentile intervals, verdicts.
:mod:`nowcast.verification.uncertainty`
    Intervals, per-case and pooled summaries and paired differences as a Dataset.
:mod:`nowcast.verification.tables`
    Their Markdown tables.
"""
