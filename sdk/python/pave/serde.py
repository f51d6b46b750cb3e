"""XCom values that are not plain JSON, in Airflow 3's serde format.

Airflow 3 stores XCom values with ``airflow.sdk.serde``: a value that is
not a JSON primitive, list or dict becomes an envelope

    {"__classname__": "datetime.datetime", "__version__": 2, "__data__": ...}

and the task that pulls it gets the object back. pave's runtime does the
same with the same envelopes (so that the stored values read the same in
both), for the types Airflow's serde handles without third-party code:

| type | ``__version__`` | ``__data__`` |
|---|---|---|
| ``tuple`` (and named tuples), ``set``, ``frozenset`` | 1 | the items (``builtins.tuple``/``set``/``frozenset``) |
| ``datetime.datetime``, ``pendulum.DateTime`` | 2 | ``{"timestamp": POSIX seconds, "tz": None or a tuple envelope [name or offset, tz class, 1, true]}`` |
| ``datetime.date``, ``pendulum.Date`` | 2 | ISO date |
| ``datetime.timedelta`` | 2 | total seconds |
| ``decimal.Decimal`` | 1 | an int, or a float when it has decimals (lossy, as in Airflow) |
| ``uuid.UUID`` | 1 | the string |
| ``zoneinfo.ZoneInfo``, pendulum time zones | 1 | the name (or offset) |
| numpy scalars (``numpy.int64``, ``numpy.float64``, ``numpy.bool_``, ...) | 1 | the number |
| dataclasses, attrs classes, pydantic models, classes with ``serialize()`` | the class's ``__version__`` or 0 | their fields |

Enums whose values are primitives (``class E(str, Enum)``) are stored as
their value. Anything else (``bytes``, ``datetime.time``, plain enums,
arbitrary objects, ...) cannot be stored, in Airflow as in pave.

Reading back follows Airflow's allow list: the built-in types above always
decode; a class of your own (dataclass, attrs, pydantic, ``serialize()``)
decodes only when its dotted name matches
``AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES`` (glob patterns, default
``airflow.*``) or ``AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP``
from the task's environment, exactly as Airflow's ``[core]
allowed_deserialization_classes``; otherwise pulling it fails.

Two deliberate differences: a datetime with a fixed UTC offset
(``datetime.timezone(timedelta(hours=2))``) is stored with the offset and
read back with it (Airflow 3.3.2 stores an empty time zone and cannot read
such a value back); and time zones come back as ``zoneinfo.ZoneInfo`` /
``datetime.timezone.utc`` (pave needs no pendulum) rather than pendulum's.
"""

from __future__ import annotations

import datetime as _dt
import enum
import fnmatch
import importlib
import math
import os
import re
import sys

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


CLASSNAME = "__classname__"
VERSION = "__version__"
DATA = "__data__"
SCHEMA_ID = "__id__"

_COLLECTIONS = {"builtins.tuple": tuple, "builtins.set": set, "builtins.frozenset": frozenset}
_DATETIMES = ("datetime.date", "datetime.datetime", "datetime.timedelta",
              "pendulum.datetime.DateTime", "pendulum.date.Date")
_TIMEZONES = ("pendulum.tz.timezone.FixedTimezone", "pendulum.tz.timezone.Timezone", "zoneinfo.ZoneInfo")
_NUMPY = tuple(f"numpy.{n}" for n in (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float64", "float32", "float16", "complex128", "complex64", "bool", "bool_",
))
_PYDANTIC = "pydantic.main.BaseModel"
#: Class names that always decode (Airflow registers its serializers' classes as allowed).
_BUILTIN_CLASSES = frozenset((*_COLLECTIONS, *_DATETIMES, *_TIMEZONES, *_NUMPY, _PYDANTIC,
                              "decimal.Decimal", "uuid.UUID"))


class XComSerdeError(TypeError):
    """A value cannot be stored as an XCom; ``what`` names its type and where it sits."""

    def __init__(self, what: str, hint: str = "", nested: bool = False) -> None:
        super().__init__(what + (f": {hint}" if hint else ""))
        self.what = what
        self.hint = hint
        self.nested = nested  # about a value inside the one being stored


# -- names -------------------------------------------------------------------------

def qualname(o: Any) -> str:
    """Airflow's ``qualname``: ``module.Class`` of a class or of an instance's class."""
    cls = o if isinstance(o, type) else type(o)
    module = cls.__module__
    return f"{module}.{cls.__qualname__}" if module and module != "__builtin__" else cls.__qualname__


def _is_namedtuple(o: Any) -> bool:
    return hasattr(o, "_asdict") and hasattr(o, "_fields") and hasattr(o, "_field_defaults")


def _is_pydantic_model(o: Any) -> bool:
    return (hasattr(o, "__pydantic_fields__") and hasattr(o, "__pydantic_validator__")
            and not _is_dataclass(o))


def _is_dataclass(o: Any) -> bool:
    # `dataclasses` is imported only for values that may be one: a plain
    # JSON value never needs it, and the zygote need not hold it.
    import dataclasses

    return dataclasses.is_dataclass(o)


def _is_attrs(cls: type) -> bool:
    return getattr(cls, "__attrs_attrs__", None) is not None


def _where(path: str) -> str:
    return f" at {path}" if path else ""


def _type_label(o: Any) -> str:
    """``datetime.time``-style name of a value's type; builtins and DAG-file classes unqualified."""
    cls = type(o)
    module = cls.__module__ or ""
    if module == "builtins" or module.startswith("unusual_prefix_"):  # a DAG file (loader.module_name_for)
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


# -- encoding ----------------------------------------------------------------------

def encode(cls: str, version: int, data: Any) -> dict[str, Any]:
    return {CLASSNAME: cls, VERSION: version, DATA: data}


def serialize(o: Any, path: str = "") -> Any:
    """``o`` as JSON-compatible values, non-JSON objects as serde envelopes
    (Airflow's ``airflow.sdk.serde.serialize``). ``XComSerdeError`` names a
    value that cannot be stored, with its place in ``o`` (``path``)."""
    if o is None:
        return None
    if isinstance(o, list):
        return [serialize(v, f"{path}[{i}]") for i, v in enumerate(o)]
    if isinstance(o, dict):
        if CLASSNAME in o or SCHEMA_ID in o:
            raise XComSerdeError(
                f"a dict with the reserved key {CLASSNAME!r} or {SCHEMA_ID!r}{_where(path)}",
                "Airflow's XCom serde reserves these keys for its own envelopes", bool(path),
            )
        return {str(k): serialize(v, f"{path}[{k!r}]") for k, v in o.items()}

    qn = qualname(o)
    classname = None
    if _is_namedtuple(o):
        qn = classname = "builtins.tuple"
    if _is_pydantic_model(o):
        qn, classname = _PYDANTIC, qualname(o)

    builtin = _serialize_builtin(qn, o, path)
    if builtin is not None:
        data, name, version = builtin
        return encode(classname or name, version, serialize(data, path))

    if isinstance(o, (int, bool, float, str)):
        if isinstance(o, enum.Enum):
            o = o.value
        if isinstance(o, float) and not math.isfinite(o):
            raise XComSerdeError(f"a non-finite float ({o!r}){_where(path)}", "JSON has no NaN or infinity",
                                 bool(path))
        return o

    cls = type(o)
    version = getattr(cls, "__version__", 0)
    if hasattr(o, "serialize") and callable(getattr(o, "serialize")):
        data = o.serialize()
        if isinstance(data, dict):
            data = serialize(data, path)
        else:
            _check_plain_json(data, path, qn)
        return encode(qn, version, data)
    if _is_dataclass(cls):
        import dataclasses

        return encode(qn, version, serialize(dataclasses.asdict(o), path))
    if _is_attrs(cls):
        data = {a.name: getattr(o, a.name) for a in cls.__attrs_attrs__ if getattr(a, "init", True)}
        return encode(qn, version, serialize(data, path))
    raise XComSerdeError(
        f"a {_type_label(o)}{_where(path)}",
        "Airflow's XCom serde (and pave's) stores JSON values, datetimes, dates, timedeltas, tuples, "
        "sets, Decimals, UUIDs, dataclasses and classes with serialize()/deserialize(); "
        "give the class those or make it a dataclass, or write the data to a file and pass its path",
        bool(path),
    )


def _check_plain_json(data: Any, path: str, qn: str) -> None:
    if data is None or isinstance(data, (str, bool, int)):
        return
    if isinstance(data, float):
        if not math.isfinite(data):
            raise XComSerdeError(f"a non-finite float in {qn}.serialize(){_where(path)}", nested=bool(path))
        return
    if isinstance(data, (list, tuple)):
        for item in data:
            _check_plain_json(item, path, qn)
        return
    raise XComSerdeError(f"{qn}.serialize() returned a {_type_label(data)}{_where(path)}",
                         "serialize() must return a dict or JSON values")


def _serialize_builtin(qn: str, o: Any, path: str) -> tuple[Any, str, int] | None:
    """(data, classname, version) from the serializer registered for ``qn``, or None."""
    if qn in _COLLECTIONS:
        return list(o), qn, 1
    if qn in _DATETIMES:
        if isinstance(o, _dt.datetime):
            tz = serialize_timezone(o.tzinfo) if o.tzinfo else None
            return {"timestamp": o.timestamp(), "tz": tz}, qn, 2
        if isinstance(o, _dt.date):
            return o.isoformat(), qn, 2
        if isinstance(o, _dt.timedelta):
            return o.total_seconds(), qn, 2
        return None
    if qn == "decimal.Decimal":
        exponent = o.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            return int(o), qn, 1
        return float(o), qn, 1
    if qn == "uuid.UUID":
        return str(o), qn, 1
    if qn in _TIMEZONES:
        tz = serialize_timezone(o)
        return (tz[0], tz[1], 1) if tz is not None and tz[3] else None
    if qn in _NUMPY:
        if "bool" in qn:
            return bool(o), qn, 1
        if "int" in qn:
            return int(o), qn, 1
        return float(o), qn, 1
    if qn == _PYDANTIC:
        return o.model_dump(mode="json"), qn, 1
    return None


def serialize_timezone(tz: Any) -> tuple[Any, str, int, bool] | None:
    """Airflow's time-zone encoding: (name or offset, tz class, version, serialized)."""
    name = qualname(tz)
    if name == "pendulum.tz.timezone.FixedTimezone":
        offset = getattr(tz, "offset", 0)
        return ("UTC" if offset == 0 else offset), name, 1, True
    for attr in ("key", "name", "zone"):  # zoneinfo, pendulum, pytz
        tz_name = getattr(tz, attr, None)
        if isinstance(tz_name, str):
            return tz_name, name, 1, True
    offset = tz.utcoffset(None)
    if offset == _dt.timedelta(0):
        return "UTC", "pendulum.tz.timezone.FixedTimezone", 1, True
    if offset is not None:
        # Airflow 3.3.2 stores ("", "", 0, False) here and cannot read it back; pave keeps the offset.
        return int(offset.total_seconds()), "pendulum.tz.timezone.FixedTimezone", 1, True
    return "", "", 0, False


# -- decoding ----------------------------------------------------------------------

def deserialize(o: Any) -> Any:
    """The objects back from ``serialize``'s output (Airflow's ``deserialize``)."""
    if o is None or isinstance(o, (int, bool, float, str)):
        return o
    if isinstance(o, (list, tuple)):
        return [deserialize(v) for v in o]
    if not isinstance(o, dict):
        return o
    if CLASSNAME not in o or VERSION not in o:
        return {str(k): deserialize(v) for k, v in o.items()}
    classname, version, data = o[CLASSNAME], o[VERSION], o.get(DATA)
    if not isinstance(classname, str) or not isinstance(version, int) or not classname:
        raise ValueError(f"cannot decode {o!r}")
    if classname not in _BUILTIN_CLASSES and not _allowed(classname):
        raise ImportError(
            f"{classname} was not found in allow list for deserialization imports. To allow it, add it "
            "to allowed_deserialization_classes in the configuration (in pave: the environment variable "
            "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES, glob patterns separated by spaces)"
        )
    if classname in _COLLECTIONS:
        if version > 1:
            raise TypeError(f"serialized version {version} is newer than class version 1")
        return _COLLECTIONS[classname](deserialize(data))
    if classname in _DATETIMES:
        return _deserialize_datetime(classname, version, deserialize(data))
    if classname == "decimal.Decimal":
        import decimal

        _check_version(classname, version, 1)
        return decimal.Decimal(str(data))
    if classname == "uuid.UUID":
        import uuid

        if not isinstance(data, str):
            raise TypeError(f"cannot deserialize uuid.UUID from {type(data)}")
        return uuid.UUID(data)
    if classname in _TIMEZONES:
        _check_version(classname, version, 1)
        return _timezone(data)
    if classname in _NUMPY:
        _check_version(classname, version, 1)
        return _import_string(classname)(data)

    cls = _import_string(classname)
    if _is_pydantic_model(cls):
        _check_version(classname, version, 1)
        return cls.model_validate(deserialize(data))
    if hasattr(cls, "deserialize"):
        return cls.deserialize(deserialize(data), version)
    if _is_attrs(cls) or _is_dataclass(cls):
        if int(version) > getattr(cls, "__version__", 0):
            raise TypeError(
                f"serialized version of {classname} is newer than module version "
                f"({version} > {getattr(cls, '__version__', 0)})"
            )
        value = deserialize(data)
        if not isinstance(value, dict):
            raise TypeError(f"deserialized value for {classname} is not a dict, got {type(value)}")
        return cls(**value)
    raise TypeError(
        f"No deserializer found for {classname}. It must provide a `deserialize(data, version)` "
        "staticmethod (matching how it serializes), or be decorated with @dataclass or @attr.define."
    )


def _check_version(classname: str, version: int, supported: int) -> None:
    if version > supported:
        raise TypeError(f"serialized {version} of {classname} > {supported}")


def _timezone(data: Any) -> _dt.tzinfo:
    """Airflow's ``parse_timezone``, on the standard library."""
    if isinstance(data, bool) or not isinstance(data, (str, int, float)):
        raise TypeError(f"{data} is not of type int or str but of {type(data)}")
    if isinstance(data, (int, float)):
        return _dt.timezone.utc if data == 0 else _dt.timezone(_dt.timedelta(seconds=data))
    if data in ("UTC", "utc", "Etc/UTC", "GMT", "Z"):
        return _dt.timezone.utc
    from zoneinfo import ZoneInfo

    return ZoneInfo(data)


def _deserialize_datetime(classname: str, version: int, data: Any) -> Any:
    _check_version(classname, version, 2)
    tz: _dt.tzinfo | None = None
    if isinstance(data, dict) and data.get("tz"):
        raw = data["tz"]
        if version == 1:
            tz = _timezone(raw)
        else:
            tz = _timezone(raw[0])
    if classname in ("datetime.datetime", "pendulum.datetime.DateTime"):
        if isinstance(data, dict):
            value = _dt.datetime.fromtimestamp(float(data["timestamp"]), tz=tz)
        elif isinstance(data, (int, float)) and not isinstance(data, bool):
            value = _dt.datetime.fromtimestamp(float(data), tz=_dt.timezone.utc)
        else:
            raise TypeError(f"unknown date/time format {classname}")
        if classname == "pendulum.datetime.DateTime":
            pendulum = _real_pendulum()
            if pendulum is not None:
                return pendulum.instance(value) if value.tzinfo else pendulum.naive(
                    value.year, value.month, value.day, value.hour, value.minute, value.second,
                    value.microsecond)
        return value
    if classname == "datetime.timedelta" and isinstance(data, (str, int, float)) and not isinstance(data, bool):
        return _dt.timedelta(seconds=float(data))
    if classname in ("datetime.date", "pendulum.date.Date") and isinstance(data, str):
        value = _dt.date.fromisoformat(data)
        pendulum = _real_pendulum() if classname == "pendulum.date.Date" else None
        return pendulum.Date(value.year, value.month, value.day) if pendulum is not None else value
    raise TypeError(f"unknown date/time format {classname}")


def _real_pendulum() -> Any:
    """The installed pendulum (not pave's standard-library stand-in), or None."""
    module = sys.modules.get("pendulum")
    if module is None:
        try:
            module = importlib.import_module("pendulum")
        except ImportError:
            return None
    return module if hasattr(module, "instance") else None


def _import_string(dotted: str) -> Any:
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise ImportError(f"{dotted} doesn't look like a module path")
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f'Module "{module_name}" does not define a "{attr}" attribute/class') from None


def _allowed(classname: str) -> bool:
    globs = os.environ.get("AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES", "airflow.*").split()
    regexps = os.environ.get("AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP", "").split()
    return (any(fnmatch.fnmatch(classname, p) for p in globs)
            or any(re.fullmatch(p, classname) for p in regexps))


# -- the runtime's side ------------------------------------------------------------

def is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and CLASSNAME in value and VERSION in value
