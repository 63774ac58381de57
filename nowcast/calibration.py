"""Calibrated exceedance probabilities: a recalibration fitted on validation days.

An ensemble of ``N`` members gives, per pixel, the number ``k`` of members at or above a
rain threshold. Even a well built ensemble turns ``k`` into a probability with errors that
depend on the lead time and on the threshold (docs/ensembles.md: at 10 mm/h the ensemble
of :class:`nowcast.ensemble.EnsembleNowcaster` is under-confident over the first half hour
and over-confident later). :class:`ProbabilityCalibration` maps ``(threshold, lead, k)``
to the frequency with which the observation exceeded the threshold on *validation* days
of the same model and radar, by an extended logistic regression (Wilks 2009, "Extending
logistic regression to provide full-probability-distribution MOS forecasts"), one per
threshold::

    p = sigmoid(a(tau) + b(tau) L + c(tau) L**2)
    L = log((k + 1/2) / (N - k + 1/2)),  tau = lead time in hours
    a, b, c = linear in 1, sqrt(tau) and tau (three coefficients each)

nine coefficients per threshold (the lead dependence in ``sqrt(tau)`` and ``tau``, the two
growth laws of the ensemble's perturbations: the walk's noise and the motion error),
fitted by weighted maximum likelihood (Newton's method with backtracking, a small ridge
penalty pulling towards ``p = (k + 1/2) / (N + 1)``) on the count tables
that :class:`nowcast.probscores.EnsembleScoreAccumulator` keeps (``exceedance_count`` and
``exceedance_observed`` in an evaluation's ``results.nc``). The probabilities are made
non-decreasing in ``k`` at every lead (a running maximum), so they rank pixels as ``k``
does. Lead times outside the fitted range take the nearest fitted lead's map.

Nothing here is fitted to an archive in advance: the user fits it on the validation split
of their own data (``nowcast calibrate``), stores it as a small NetCDF file next to the
run, and evaluation and forecasts read it (``--calibration FILE``). A calibration belongs
to one model, one ensemble generator and one member count ``N``; using it with another
``N`` or threshold is an error.

Public surface: :class:`ProbabilityCalibration` (``probability``, ``save``, ``load``) and
:func:`fit_calibration`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["ProbabilityCalibration", "fit_calibration"]

_N_COEF = 9
_PRIOR = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # p = (k + 1/2) / (N + 1)
_RIDGE = 1.0  # negligible against a validation split's pixels, decisive when a table is empty
_NEWTON_ITERATIONS = 100
FORMAT = "nowcast-probability-calibration-1"
"""Value of the ``format`` attribute of a saved calibration."""


@dataclass(frozen=True)
class ProbabilityCalibration:
    """Fitted maps ``(threshold, lead, k) -> probability`` (see the module docstring).

    Parameters
    ----------
    thresholds_mmh : tuple of float
        Rain thresholds (mm/h), one row of ``coefficients`` each.
    n_members : int
        Ensemble size ``N`` the maps were fitted for.
    lead_range : tuple of float
        Smallest and largest fitted lead time (minutes).
    coefficients : numpy.ndarray
        ``(K, 9)``: per threshold the coefficients of ``1, L, L^2, sqrt(tau), sqrt(tau) L,
        sqrt(tau) L^2, tau, tau L, tau L^2``.
    predictor : str
        Name of the predictor whose ensemble was fitted (for reports).
    n_pixels : int
        Validation pixels (per threshold, over all leads) the fit used.
    """

    thresholds_mmh: tuple[float, ...]
    n_members: int
    lead_range: tuple[float, float]
    coefficients: np.ndarray
    predictor: str = ""
    n_pixels: int = 0

    def table(self, threshold_mmh: float, lead_minutes: float) -> np.ndarray:
        """Probabilities ``(N + 1,)`` for ``k = 0..N`` at one threshold and lead."""
        row = self._row(threshold_mmh)
        lo, hi = self.lead_range
        tau = float(np.clip(lead_minutes, lo, hi)) / 60.0
        features = _features(self.n_members, np.array([tau]))[0]  # (N + 1, 9)
        prob = _sigmoid(features @ self.coefficients[row])
        return np.maximum.accumulate(prob)

    def probability(
        self,
        counts: np.ndarray,
        n_members: int,
        threshold_mmh: float,
        lead_minutes: float | Sequence[float] | np.ndarray,
    ) -> np.ndarray:
        """Calibrated probabilities of the counts ``k`` of members at or above a threshold.

        Parameters
        ----------
        counts : numpy.ndarray
            ``(..., H, W)`` integers in ``0..n_members``.
        n_members : int
            Ensemble size; must be the fitted one.
        threshold_mmh : float
            Rain threshold (mm/h); must be one of ``thresholds_mmh``.
        lead_minutes : float or array-like
            Lead time (min) of each frame: a scalar or an array of ``counts.shape[:-2]``.

        Returns
        -------
        numpy.ndarray
            ``counts``' shape, float64 in ``[0, 1]``.
        """
        if int(n_members) != self.n_members:
            raise ValueError(
                f"the calibration was fitted for {self.n_members} members; got {n_members}"
            )
        k = np.asarray(counts)
        if k.ndim < 2:
            raise ValueError(f"counts must be (..., H, W); got shape {k.shape}")
        if k.size and (k.min() < 0 or k.max() > self.n_members):
            raise ValueError(f"counts must lie in 0..{self.n_members}; got {k.min()}..{k.max()}")
        leads = np.broadcast_to(np.asarray(lead_minutes, dtype=np.float64), k.shape[:-2])
        out = np.empty(k.shape, np.float64)
        tables: dict[float, np.ndarray] = {}
        for idx in np.ndindex(*k.shape[:-2]):
            lead = round(float(leads[idx]), 6)
            if lead not in tables:
                tables[lead] = self.table(threshold_mmh, lead)
            out[idx] = tables[lead][k[idx]]
        return out

    def _row(self, threshold_mmh: float) -> int:
        for i, t in enumerate(self.thresholds_mmh):
            if np.isclose(t, float(threshold_mmh)):
                return i
        raise ValueError(
            f"the calibration has no threshold {threshold_mmh:g} mm/h; it has "
            f"{[float(t) for t in self.thresholds_mmh]}"
        )

    # ------------------------------------------------------------------ files
    def to_dataset(self) -> xr.Dataset:
        """The calibration as a dataset (``coefficients`` (threshold, coefficient))."""
        return xr.Dataset(
            {"coefficients": (("threshold", "coefficient"), np.asarray(self.coefficients))},
            coords={
                "threshold": ("threshold", np.asarray(self.thresholds_mmh), {"units": "mm/h"}),
                "coefficient": ("coefficient", np.arange(_N_COEF)),
            },
            attrs={
                "format": FORMAT,
                "n_members": int(self.n_members),
                "lead_min_minutes": float(self.lead_range[0]),
                "lead_max_minutes": float(self.lead_range[1]),
                "predictor": self.predictor,
                "n_pixels": int(self.n_pixels),
                "model": "p = sigmoid(coefficients . (1, L, L^2, s, s L, s L^2, tau, tau L, "
                "tau L^2)), L = log((k + 1/2) / (N - k + 1/2)), tau = lead (h), s = sqrt(tau)",
            },
        )

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, source: str = "dataset") -> ProbabilityCalibration:
        """Inverse of :meth:`to_dataset`; ``source`` names the file in errors."""
        if ds.attrs.get("format") != FORMAT or "coefficients" not in ds:
            raise ValueError(
                f"{source} is not a probability calibration (expected attribute "
                f"format={FORMAT!r} and a 'coefficients' variable)"
            )
        coef = np.asarray(ds["coefficients"].values, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[1] != _N_COEF or not np.all(np.isfinite(coef)):
            raise ValueError(
                f"{source}: coefficients must be finite, (threshold, {_N_COEF}); got "
                f"shape {coef.shape}"
            )
        return cls(
            thresholds_mmh=tuple(float(t) for t in ds["threshold"].values),
            n_members=int(ds.attrs["n_members"]),
            lead_range=(float(ds.attrs["lead_min_minutes"]), float(ds.attrs["lead_max_minutes"])),
            coefficients=coef,
            predictor=str(ds.attrs.get("predictor", "")),
            n_pixels=int(ds.attrs.get("n_pixels", 0)),
        )

    def save(self, path: str | Path) -> Path:
        """Write the calibration as NetCDF; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_dataset().to_netcdf(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ProbabilityCalibration:
        """Read a calibration written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no calibration file at {path}; fit one with `nowcast calibrate`")
        try:
            with xr.open_dataset(path) as ds:
                ds.load()
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} is not a readable NetCDF calibration: {err}") from None
        return cls.from_dataset(ds, source=str(path))


def fit_calibration(
    results: xr.Dataset | Sequence[xr.Dataset], predictor: str | None = None
) -> ProbabilityCalibration:
    """Fit the probability maps on the count tables of validation evaluations.

    Parameters
    ----------
    results : xarray.Dataset or sequence of them
        With ``exceedance_count`` and ``exceedance_observed`` (``[predictor,] lead_time,
        threshold, members_above``), e.g. ``results.nc`` of ``nowcast evaluate --members N``
        on the validation split; the tables of several (other validation days, other
        stores) are added up, so they must share lead times, thresholds and ``N``.
    predictor : str, optional
        Which predictor's tables (needed when ``results`` has several; the baselines of
        :data:`nowcast.baselines.BASELINE_NAMES` are skipped when choosing one).

    Returns
    -------
    ProbabilityCalibration
    """
    parts = [results] if isinstance(results, xr.Dataset) else list(results)
    if not parts:
        raise ValueError("no results to fit a calibration on")
    tables = [_tables(part, predictor) for part in parts]
    count, observed, predictor = tables[0]
    for other in tables[1:]:
        if other[0].shape != count.shape or not all(
            np.allclose(other[0][d].values, count[d].values) for d in count.dims
        ):
            raise ValueError(
                "the results' count tables differ in lead times, thresholds or members: "
                f"{dict(count.sizes)} against {dict(other[0].sizes)}"
            )
        count, observed = count + other[0].values, observed + other[1].values
    n = count.sizes["members_above"] - 1
    if n < 1:
        raise ValueError("the count tables need at least one member")
    leads = np.asarray(count["lead_time"].values, dtype=np.float64)
    features = _features(n, leads / 60.0)  # (T, N + 1, 9)
    coefs = np.stack(
        [
            _fit_one(features, count.values[i], observed.values[i])
            for i in range(count.sizes["threshold"])
        ]
    )
    return ProbabilityCalibration(
        thresholds_mmh=tuple(float(t) for t in count["threshold"].values),
        n_members=n,
        lead_range=(float(leads.min()), float(leads.max())),
        coefficients=coefs,
        predictor=predictor or "",
        n_pixels=int(count.values.sum(axis=(1, 2)).min()),
    )


def _tables(results: xr.Dataset, predictor: str | None):
    """``(count, observed, predictor)``: one predictor's tables (threshold, lead, k)."""
    for var in ("exceedance_count", "exceedance_observed"):
        if var not in results:
            raise ValueError(
                f"the results have no {var!r}: evaluate with --members N to get the count tables"
            )
    count, observed = results["exceedance_count"], results["exceedance_observed"]
    if "predictor" in count.dims:
        names = [str(p) for p in results["predictor"].values]
        if predictor is None:
            from nowcast.baselines import BASELINE_NAMES

            own = [p for p in names if p not in BASELINE_NAMES]
            if len(own) != 1:
                raise ValueError(f"choose the predictor to calibrate, one of {names}")
            predictor = own[0]
        if predictor not in names:
            raise ValueError(f"unknown predictor {predictor!r}; expected one of {names}")
        count, observed = count.sel(predictor=predictor), observed.sel(predictor=predictor)
    if "n_members" in results:  # other predictors' members may have widened the tables
        n = results["n_members"]
        n = int(n.sel(predictor=predictor) if "predictor" in n.dims else n)
        count, observed = (v.isel(members_above=slice(0, n + 1)) for v in (count, observed))
    count = count.fillna(0).transpose("threshold", "lead_time", "members_above")
    observed = observed.fillna(0).transpose("threshold", "lead_time", "members_above")
    return count, observed, predictor


def _features(n: int, tau: np.ndarray) -> np.ndarray:
    """``(T, N + 1, 9)``: ``1, L, L^2`` times ``1, sqrt(tau), tau`` for ``k = 0..N``."""
    k = np.arange(n + 1, dtype=np.float64)
    logit = np.log((k + 0.5) / (n - k + 0.5))
    lg, tg = np.meshgrid(logit, np.asarray(tau, dtype=np.float64))
    base = [np.ones_like(lg), lg, lg**2]
    return np.stack([f * g for g in (1.0, np.sqrt(tg), tg) for f in base], axis=-1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _fit_one(features: np.ndarray, count: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Weighted logistic regression: Newton's method with backtracking, ridge to the prior."""
    x = features.reshape(-1, _N_COEF)
    c = np.asarray(count, dtype=np.float64).reshape(-1)
    h = np.clip(np.asarray(observed, dtype=np.float64).reshape(-1), 0.0, None)
    h = np.minimum(h, c)
    prior = _PRIOR

    def objective(w: np.ndarray) -> float:  # penalised log-likelihood, to be maximised
        z = x @ w
        loglik = -(h * np.logaddexp(0.0, -z) + (c - h) * np.logaddexp(0.0, z)).sum()
        return float(loglik - 0.5 * _RIDGE * np.sum((w - prior) ** 2))

    w = prior.copy()
    best = objective(w)
    for _ in range(_NEWTON_ITERATIONS):
        p = _sigmoid(x @ w)
        grad = x.T @ (h - c * p) - _RIDGE * (w - prior)
        hess = (x * (c * p * (1 - p))[:, None]).T @ x + _RIDGE * np.eye(_N_COEF)
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while size > 1e-6:  # halve the step until the objective improves
            trial = objective(w + size * step)
            if trial >= best:
                break
            size *= 0.5
        else:
            break
        w, gain, best = w + size * step, trial - best, trial
        if np.max(np.abs(size * step)) < 1e-10 or gain < 1e-12 * max(abs(best), 1.0):
            break
    return w
