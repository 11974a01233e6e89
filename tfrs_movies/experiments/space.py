"""The tuning search space: which config keys a study varies, and over which values.

A dimension is written ``section.key=SPEC`` on the command line (``--space``):

* ``a..b``: a float, uniform in [a, b]; ``log:a..b``: log-uniform; ``int:a..b``: an integer;
* ``v1,v2,...``: one of the values, each coerced to the key's type (``true,false``, ``32,64``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import optuna

from tfrs_movies.config import Config, ConfigError, config_from_dict, config_keys, parse_value


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched config key.

    Attributes:
        name: ``section.key`` of the config.
        kind: ``"float"``, ``"int"`` or ``"choice"``.
        low, high: the range of a float or int dimension.
        log: sample on a log scale (float and int only).
        choices: the values of a choice dimension, already of the key's type.
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution of this dimension (for ``study.ask``)."""
        if self.kind == "float":
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.CategoricalDistribution(list(self.choices))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this dimension can propose."""
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (self.kind == "float" or value == int(value))

    def suggest(self, trial: optuna.Trial) -> Any:
        """The value ``trial`` proposes for this dimension."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def describe(self) -> str:
        """The dimension in ``--space`` syntax (what the README and the study record show)."""
        if self.kind == "choice":
            return f"{self.name}=" + ",".join(_text(v) for v in self.choices)
        prefix = "log:" if self.log else ("int:" if self.kind == "int" else "")
        if self.kind == "int" and self.log:
            prefix = "int:log:"
        return f"{self.name}={prefix}{_text(self.low)}..{_text(self.high)}"


def _text(value: Any) -> str:
    return (
        str(value).lower()
        if isinstance(value, bool)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


def _float(text: str, spec: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"search space {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"search space {spec!r}: bounds must be finite, got {text!r}")
    return number


def parse_dimension(spec: str) -> Dimension:
    """Parses ``section.key=SPEC`` (see the module docstring).

    Raises:
        ConfigError: not of that form, an unknown config key, an empty or inverted range, a log
            range that is not positive, or a choice value of the wrong type.
    """
    name, sep, body = spec.partition("=")
    name, body = name.strip(), body.strip()
    known = config_keys()
    if not sep or not body:
        raise ConfigError(
            f"search space {spec!r} is not of the form section.key=SPEC "
            "(e.g. train.learning_rate=log:0.001..0.02 or model.embedding_dim=32,64,128)"
        )
    if name not in known:
        raise ConfigError(
            f"search space: unknown parameter {name!r}; searchable keys are config keys such as "
            + ", ".join(sorted(k for k in known if k.startswith(("model.", "train."))))
        )
    kind, log = "float", False
    for tag in ("int:", "log:"):
        while body.startswith(tag):
            body = body[len(tag) :]
            kind = "int" if tag == "int:" else kind
            log = log or tag == "log:"
    if ".." in body:
        low_text, _, high_text = body.partition("..")
        low, high = _float(low_text, spec), _float(high_text, spec)
        if not low < high:
            raise ConfigError(f"search space {spec!r}: the range must have low < high")
        if log and low <= 0:
            raise ConfigError(f"search space {spec!r}: a log range must be > 0")
        if kind == "int" and not (low.is_integer() and high.is_integer()):
            raise ConfigError(f"search space {spec!r}: int bounds must be whole numbers")
        if kind == "int" and _numeric_type(known[name]) is float:
            kind = "float"  # a float key keeps float draws; int: only fixes the bounds
        numeric = _numeric_type(known[name])
        if numeric is None:
            raise ConfigError(
                f"search space {spec!r}: {name} is not a number; list its values instead "
                f"(e.g. {name}=a,b)"
            )
        if numeric is int:
            kind = "int"  # an integer key searched over a range draws integers
            if not (low.is_integer() and high.is_integer()):
                raise ConfigError(f"search space {spec!r}: {name} takes whole numbers")
        return Dimension(name, kind, low, high, log)
    if kind != "float" or log:
        raise ConfigError(f"search space {spec!r}: int: and log: need a range a..b")
    values = [v.strip() for v in body.split(",") if v.strip()]
    if not values:
        raise ConfigError(f"search space {spec!r}: no values")
    choices = tuple(dict.fromkeys(parse_value(name, v) for v in values))
    return Dimension(name, "choice", choices=choices)


def _numeric_type(annotation: Any) -> type | None:
    """int or float for a numeric (or optional numeric) config key; None otherwise."""
    if annotation in (int, float):
        return annotation
    inner = [a for a in typing.get_args(annotation) if a is not type(None)]
    return inner[0] if len(inner) == 1 and inner[0] in (int, float) else None


# The default space (README "Tuning"): the loss weights, the model's size and regularization,
# the optimizer's step and batch, the softmax temperature, and the side-feature switches.
DEFAULT_SPACE: tuple[str, ...] = (
    "train.retrieval_weight=log:0.5..8",
    "train.rating_weight=log:0.1..2",
    "model.embedding_dim=32,64,128",
    "model.temperature=log:0.03..0.3",
    "model.embedding_l2=log:0.00001..0.01",
    "model.rating_dropout=0..0.5",
    "model.query_dropout=0..0.5",
    "train.learning_rate=log:0.001..0.02",
    "train.batch_size=512,1024,2048,4096",
    "model.use_genres=false,true",
    "model.use_year=false,true",
)


def build_space(specs: Iterable[str], fixed: Mapping[str, Any] = ()) -> tuple[Dimension, ...]:
    """The default space, with ``specs`` replacing or adding dimensions and ``fixed`` keys removed.

    Args:
        specs: ``section.key=SPEC`` strings.
        fixed: ``section.key`` names the user set explicitly (overrides): not searched.

    Raises:
        ConfigError: a bad spec (see :func:`parse_dimension`) or nothing left to search.
    """
    dimensions = {d.name: d for d in map(parse_dimension, DEFAULT_SPACE)}
    for spec in specs:
        dimension = parse_dimension(spec)
        dimensions[dimension.name] = dimension
    for name in fixed:
        dimensions.pop(name, None)
    if not dimensions:
        raise ConfigError("the search space is empty: every searched key was fixed by an override")
    return tuple(dimensions.values())


def apply_params(base: Config, params: Mapping[str, Any]) -> Config:
    """``base`` with each ``section.key`` of ``params`` set (validated like any config)."""
    nested: dict[str, dict[str, Any]] = {}
    for name, value in params.items():
        section, _, key = name.partition(".")
        nested.setdefault(section, {})[key] = value
    return config_from_dict(nested, base)


def describe_space(space: Sequence[Dimension]) -> list[str]:
    return [d.describe() for d in space]
