"""What an engine failure may say: a fixed message per kind of failure, never DuckDB's text.

DuckDB's messages quote the values they failed on ("Overflow in multiplication of INT64
(1005954780857159141 * 1001981)", "Could not convert string 'Shanghai' to INT32") and
the SQL it ran. Values leave an owner only through its disclosure control, so an engine
error is classified by its exception type into one of a few ``Failure`` kinds, and the
error raised carries that kind's fixed message; the caller may say where it happened
and which columns were involved (names from the plan, never values). DuckDB's own text
goes only to the node's log, at WARNING (``gateway.engine``): the operator may read it,
nobody else.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from gateway.errors import InvalidArgument


class Failure(enum.Enum):
    OVERFLOW = "overflow"  # OutOfRangeException: a value out of its type's range
    CONVERSION = "conversion"  # ConversionException: a value that does not convert
    EVALUATION = "evaluation"  # InvalidInputException, DataError: division by zero, ...
    TYPES = "types"  # BinderException, TypeMismatchException: types that do not fit
    OTHER = "other"  # anything else: a generic message


# DuckDB's exception classes by name (the engine imports duckdb lazily; classifying by
# name keeps this module free of it). The first class of the exception's MRO found here
# decides, so a ConversionException is CONVERSION before it is a DataError.
_BY_CLASS: dict[str, Failure] = {
    "OutOfRangeException": Failure.OVERFLOW,
    "ConversionException": Failure.CONVERSION,
    "TypeMismatchException": Failure.TYPES,
    "BinderException": Failure.TYPES,
    "InvalidInputException": Failure.EVALUATION,
    "DataError": Failure.EVALUATION,
}


def classify(exc: BaseException) -> Failure:
    """The kind of a DuckDB exception (``Failure.OTHER`` for anything not DuckDB's)."""
    for cls in type(exc).__mro__:
        if not cls.__module__.lstrip("_").startswith("duckdb"):
            continue
        failure = _BY_CLASS.get(cls.__name__)
        if failure is not None:
            return failure
    return Failure.OTHER


_TEXT: dict[Failure, str] = {
    Failure.OVERFLOW: (
        "a value computed by the query is out of range for its type (integer overflow)"
        "{place}; the {who} does not say which {unit}: compute with smaller numbers"
    ),
    Failure.CONVERSION: (
        "a value could not be converted to the type the query needs{place}; the {who} "
        "does not say which {unit}: compare each column with a literal of its own type"
    ),
    Failure.EVALUATION: (
        "an expression of the query could not be evaluated on the data (for example a "
        "division by zero){place}; the {who} does not say which {unit}"
    ),
    Failure.TYPES: (
        "the types in the query do not fit together (for example a string compared with "
        "a number){place}"
    ),
    Failure.OTHER: "the local engine could not run the query",
}

OWNER, HOME = "owner", "home"
_UNIT = {OWNER: "row", HOME: "group"}


def message(failure: Failure, *, who: str = OWNER, place: str = "") -> str:
    """The fixed message of ``failure``; ``place`` (" in the WHERE clause ...") is ours,
    built from the plan's column names."""
    return _TEXT[failure].format(place=place, who=who, unit=_UNIT[who])


def columns_phrase(what: str, columns: Iterable[str]) -> str:
    """ " in <what>, over 'a' and 'b'" (" in <what>" without columns; ", over ..."
    without ``what``). Column names only: they passed the subset's identifier rule."""
    names = [repr(c) for c in sorted(set(columns))]
    phrase = f" in {what}" if what else ""
    if names:
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        phrase += f", over {listed}" if what else f" over {listed}"
    return phrase


class EngineError(InvalidArgument):
    """The local engine could not run a query. Its message is one of the fixed texts
    above: never the engine's own, which holds values and the generated SQL."""

    def __init__(self, failure: Failure, *, who: str = OWNER, place: str = "") -> None:
        super().__init__(message(failure, who=who, place=place))
        self.failure = failure
        self.who = who

    def placed(self, place: str) -> EngineError:
        """The same failure, saying where it happened."""
        return EngineError(self.failure, who=self.who, place=place)
