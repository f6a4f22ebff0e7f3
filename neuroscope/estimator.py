"""scikit-learn's estimator contract for the probes, with scikit-learn optional.

With scikit-learn installed (``pip install "neuroscope-nlp[sklearn]"``) the probes inherit
its ``ClassifierMixin`` and ``BaseEstimator``: ``get_params`` / ``set_params``, ``clone``,
``__sklearn_tags__``, and they work in ``Pipeline``, ``GridSearchCV`` and
``cross_val_score``; in-memory inputs are validated by scikit-learn's own
``validate_data`` (dense 2-D finite numbers, ``n_features_in_``, the same errors as its
estimators). Without it, :class:`BaseEstimator` and :class:`ClassifierMixin` below give
the same parameter protocol and ``score`` so the probes behave the same in plain Python.

An :class:`~neuroscope.store.ActivationSet` (the out-of-core store) is never validated
row by row here: it checks its own blocks when they are read.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

from neuroscope.errors import ValidationError
from neuroscope.store import ActivationSet

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data

    HAVE_SKLEARN = True
except ImportError:  # the optional extra is not installed
    HAVE_SKLEARN = False

    class NotFittedError(ValueError, AttributeError):  # type: ignore[no-redef]
        """Raised when a probe is used before ``fit`` (scikit-learn's exception where installed)."""

    class BaseEstimator:  # type: ignore[no-redef]
        """The parameter protocol of scikit-learn's ``BaseEstimator``: the constructor's
        arguments are the parameters, stored unchanged under their own names."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            return sorted(p for p in inspect.signature(cls.__init__).parameters if p != "self")

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params: Any) -> "BaseEstimator":
            valid = self._get_param_names()
            for name, value in params.items():
                if name not in valid:
                    raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; valid: "
                                     f"{', '.join(valid)}")
                setattr(self, name, value)
            return self

        def __repr__(self) -> str:
            defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
            changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) is not v
                                and defaults.get(k) != v)
            return f"{type(self).__name__}({changed})"

    class ClassifierMixin:  # type: ignore[no-redef]
        """scikit-learn's classifier convention: ``score`` is the mean accuracy, a fraction."""

        _estimator_type = "classifier"

        def score(self, X: Any, y: Sequence[Any]) -> float:
            return float(np.mean(self.predict(X) == np.asarray(y)))  # type: ignore[attr-defined]


def is_out_of_core(X: Any) -> bool:
    return isinstance(X, ActivationSet)


def fit_inputs(estimator: Any, X: Any, y: Any) -> tuple[Any, np.ndarray]:
    """``X`` and ``y`` for ``fit``: validated when ``X`` is in memory (``n_features_in_`` set),
    ``y`` one label per row with at least two classes."""
    if y is None:
        raise ValidationError(f"{type(estimator).__name__} requires y to be passed, but the target y is None: "
                              "a probe is trained on labelled rows")
    if is_out_of_core(X):
        estimator.n_features_in_ = X.n_neurons
        y = np.asarray(y)
    elif HAVE_SKLEARN:
        X, y = validate_data(estimator, X, y, dtype=(np.float32, np.float64, np.float16))
        check_classification_targets(y)
    else:
        X, y = np.asarray(X), np.asarray(y)
        if X.ndim != 2:
            raise ValidationError(f"X: expected a 2-D (rows, neurons) array, found shape {X.shape}")
        estimator.n_features_in_ = X.shape[1]
    if y.ndim != 1 or len(y) != (X.n_tokens if is_out_of_core(X) else X.shape[0]):
        raise ValidationError(f"y: shape {y.shape}, expected one label per row of X")
    return X, y


def predict_inputs(estimator: Any, X: Any) -> Any:
    """``X`` for ``predict`` and friends: the probe is fitted and ``X`` has the training width."""
    if HAVE_SKLEARN:
        check_is_fitted(estimator, "coef_")
    elif not hasattr(estimator, "coef_"):
        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet; call fit first")
    if is_out_of_core(X):
        width = X.n_neurons
    elif HAVE_SKLEARN:
        return validate_data(estimator, X, reset=False, dtype=(np.float32, np.float64, np.float16))
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValidationError(f"X: expected a 2-D (rows, neurons) array, found shape {X.shape}")
        width = X.shape[1]
    if width != estimator.n_features_in_:
        raise ValidationError(f"X has {width} features, but {type(estimator).__name__} is expecting "
                              f"{estimator.n_features_in_} features as input")
    return X
