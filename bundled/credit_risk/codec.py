"""Strict validation and encoding of credit-risk inputs, row-wise or columnar.

Training and serving encode through the same :class:`FeatureCodec`, so a value the
server would refuse can never have been accepted at training time (no train/serve
skew in validation or normalisation). It is strict on purpose: a bad input is
refused with :class:`~paved.errors.InvalidInput` naming the rule, the feature and
(where there is one) the row, instead of being guessed at and scored.

Rules (``InvalidInput.rule``; ``details`` carries ``feature`` and ``row``)::

    batch_type          rows is not a list, or columns is not a mapping
    row_type            a row is not a mapping
    feature_unknown     a name the model does not take
    feature_missing     a feature the model needs is absent
    datatype_mismatch   a declared KServe v2 datatype differs from the feature's
    column_type         a column is not a list, tuple or 1-D array
    column_length       columns of different lengths
    feature_type        a value of the wrong type for the feature's kind
    feature_not_finite  NaN, +inf or -inf (or an int beyond float range) in a numeric
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from bundled.credit_risk.features import OOV_INDEX, FeatureSpec, TensorSpec
from paved.errors import InvalidInput

Column = Sequence[object] | npt.NDArray[Any]


@dataclass(frozen=True)
class EncodedBatch:
    """Model-ready arrays: dense = standardised numerics then binaries (float32)."""

    dense: npt.NDArray[np.float32]
    categorical: npt.NDArray[np.int64]

    @property
    def rows(self) -> int:
        return int(self.dense.shape[0])


def _refuse(
    message: str, rule: str, feature: str | None = None, row: int | None = None
) -> NoReturn:
    details: dict[str, object] = {}
    if feature is not None:
        details["feature"] = feature
    if row is not None:
        details["row"] = row
    raise InvalidInput(message, rule=rule, details=details)


def _type_error(spec: FeatureSpec, expected: str, value: object, row: int) -> NoReturn:
    _refuse(
        f"feature {spec.name!r} must be {expected} ({spec.datatype}), got "
        f"{type(value).__name__} in row {row}",
        "feature_type",
        spec.name,
        row,
    )


class FeatureCodec:
    """Validates inputs against the feature specs and encodes them for the network."""

    def __init__(self, specs: Sequence[FeatureSpec]) -> None:
        if not specs:
            raise ValueError("a model needs at least one feature")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        self.specs: tuple[FeatureSpec, ...] = tuple(specs)
        self.numeric = tuple(s for s in specs if s.kind == "numeric")
        self.binary = tuple(s for s in specs if s.kind == "binary")
        self.categorical = tuple(s for s in specs if s.kind == "categorical")
        self._by_name = {s.name: s for s in specs}
        self._indices = {
            s.name: {v: i + 1 for i, v in enumerate(s.vocabulary or ())} for s in self.categorical
        }

    @property
    def dense_width(self) -> int:
        return len(self.numeric) + len(self.binary)

    def input_schema(self) -> list[TensorSpec]:
        """One KServe v2 input per feature, each a 1-D batch of scalars."""
        return [TensorSpec(name=s.name, datatype=s.datatype, shape=[-1]) for s in self.specs]

    def encode_rows(self, rows: Sequence[Mapping[str, object]]) -> EncodedBatch:
        """Validate a list of ``{feature: value}`` rows and encode them column-wise."""
        if not isinstance(rows, list | tuple):
            _refuse(f"rows must be a list of objects, got {type(rows).__name__}", "batch_type")
        columns: dict[str, list[object]] = {s.name: [] for s in self.specs}
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                _refuse(f"row {i} must be an object, got {type(row).__name__}", "row_type", row=i)
            self._check_names(list(row.keys()), row=i)
            for name, column in columns.items():
                column.append(row[name])
        return self.encode_columns(columns)

    def encode_columns(
        self,
        columns: Mapping[str, object],
        datatypes: Mapping[str, str] | None = None,
    ) -> EncodedBatch:
        """Validate one equal-length column per feature (KServe v2 style) and encode them.

        ``datatypes`` are the v2 datatypes the client declared, checked when given so
        a client that sends FP32 for a categorical learns that, not a type error.
        """
        if not isinstance(columns, Mapping):
            _refuse(f"inputs must be a mapping, got {type(columns).__name__}", "batch_type")
        self._check_names(list(columns.keys()))
        self._check_datatypes(datatypes or {})
        checked = {s.name: self._column(s, columns[s.name]) for s in self.specs}
        n_rows = self._common_length(checked)
        dense = np.zeros((n_rows, self.dense_width), dtype=np.float32)
        for j, spec in enumerate(self.numeric):
            dense[:, j] = spec.standardise(self._numeric(spec, checked[spec.name]))
        for j, spec in enumerate(self.binary, start=len(self.numeric)):
            dense[:, j] = self._binary(spec, checked[spec.name])
        categorical = np.zeros((n_rows, len(self.categorical)), dtype=np.int64)
        for j, spec in enumerate(self.categorical):
            categorical[:, j] = self._categorical(spec, checked[spec.name])
        return EncodedBatch(dense=dense, categorical=categorical)

    def _check_names(self, names: Sequence[object], row: int | None = None) -> None:
        where = f" in row {row}" if row is not None else ""
        for name in names:
            if not isinstance(name, str) or name not in self._by_name:
                _refuse(
                    f"unknown feature {name!r}{where}; the model takes: "
                    + ", ".join(self._by_name),
                    "feature_unknown",
                    str(name),
                    row,
                )
        present = set(names)
        for spec in self.specs:
            if spec.name not in present:
                _refuse(
                    f"feature {spec.name!r} is missing{where}", "feature_missing", spec.name, row
                )

    def _check_datatypes(self, datatypes: Mapping[str, str]) -> None:
        for name, declared in datatypes.items():
            spec = self._by_name.get(name)
            if spec is None:
                _refuse(f"unknown feature {name!r}", "feature_unknown", name)
            if declared != spec.datatype:
                _refuse(
                    f"feature {name!r} is {spec.datatype}, the request declares {declared!r}",
                    "datatype_mismatch",
                    name,
                )

    @staticmethod
    def _column(spec: FeatureSpec, value: object) -> Column:
        if isinstance(value, np.ndarray) and value.ndim == 1:
            return value
        if isinstance(value, list | tuple):
            return value
        _refuse(f"feature {spec.name!r} must be a 1-D array of values", "column_type", spec.name)

    def _common_length(self, columns: Mapping[str, Column]) -> int:
        first = self.specs[0].name
        length = len(columns[first])
        for spec in self.specs:
            if len(columns[spec.name]) != length:
                _refuse(
                    f"feature {spec.name!r} has {len(columns[spec.name])} values but "
                    f"{first!r} has {length}",
                    "column_length",
                    spec.name,
                )
        return length

    @staticmethod
    def _numeric(spec: FeatureSpec, column: Column) -> npt.NDArray[np.float64]:
        if isinstance(column, np.ndarray):
            if column.dtype.kind not in "iuf":
                _refuse(
                    f"feature {spec.name!r} must be numbers (FP32), got an array of {column.dtype}",
                    "feature_type",
                    spec.name,
                )
            values = column.astype(np.float64)
        else:
            floats: list[float] = []
            for i, v in enumerate(column):
                if isinstance(v, bool | np.bool_) or not isinstance(
                    v, int | float | np.integer | np.floating
                ):
                    _type_error(spec, "a number", v, i)
                try:
                    floats.append(float(v))
                except OverflowError:  # an int beyond float64: refused below as not finite
                    floats.append(math.inf)
            values = np.asarray(floats, dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            _refuse(
                f"feature {spec.name!r} must be finite, got {values[row]} in row {row}",
                "feature_not_finite",
                spec.name,
                row,
            )
        return values

    @staticmethod
    def _binary(spec: FeatureSpec, column: Column) -> npt.NDArray[np.float32]:
        if isinstance(column, np.ndarray) and column.dtype.kind == "b":
            return column.astype(np.float32)
        for i, v in enumerate(column):
            if not isinstance(v, bool | np.bool_):
                _type_error(spec, "true or false", v, i)
        return np.asarray(column, dtype=np.float32)

    def _categorical(self, spec: FeatureSpec, column: Column) -> npt.NDArray[np.int64]:
        if isinstance(column, np.ndarray) and column.dtype.kind == "U":
            strings: list[str] = column.tolist()
        else:
            strings = [_to_text(spec, v, i) for i, v in enumerate(column)]
        index = self._indices[spec.name]
        return np.fromiter(
            (index.get(s, OOV_INDEX) for s in strings), dtype=np.int64, count=len(strings)
        )


def _to_text(spec: FeatureSpec, value: object, row: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    _type_error(spec, "a UTF-8 string", value, row)
