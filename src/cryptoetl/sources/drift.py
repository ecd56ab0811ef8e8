"""Schema drift detection: compare what an upstream sends with the Struct we decode it into.

Upstream APIs rename, add and retype fields without notice. Records still decode (or get
rejected) either way, so drift events are how an operator learns *why* a source changed
behaviour: ``added`` (a key we do not declare), ``removed`` (a declared key that no item
carried; with the most similar added key as a rename candidate) and ``type_changed`` (a value
whose JSON type the declared type cannot accept).

Nested Structs are followed: a field ``roi: Roi | None`` is checked as ``roi.times`` and so on,
and a mapping of Structs such as CoinPaprika's ``quotes: dict[str, Quote]`` as ``quotes.*.price``.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from cryptoetl.sources.base import DriftEvent

# Below this ratio two names are unrelated; 0.6 is difflib's own "close match" default.
CANDIDATE_MIN_RATIO = 0.6
SAMPLE_MAX_CHARS = 120

_JSON_KIND_OF: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}

# The JSON kinds msgspec.convert accepts for each inspect type (strict mode, as we decode).
_KINDS_OF_INSPECT_TYPE: dict[type[msgspec.inspect.Type], frozenset[str]] = {
    msgspec.inspect.NoneType: frozenset({"null"}),
    msgspec.inspect.BoolType: frozenset({"boolean"}),
    msgspec.inspect.IntType: frozenset({"integer"}),
    msgspec.inspect.FloatType: frozenset({"integer", "number"}),
    msgspec.inspect.DecimalType: frozenset({"integer", "number", "string"}),
    msgspec.inspect.StrType: frozenset({"string"}),
    msgspec.inspect.DateTimeType: frozenset({"string"}),
    msgspec.inspect.DateType: frozenset({"string"}),
    msgspec.inspect.TimeType: frozenset({"string"}),
    msgspec.inspect.UUIDType: frozenset({"string"}),
    msgspec.inspect.LiteralType: frozenset({"string", "integer"}),
    msgspec.inspect.EnumType: frozenset({"string", "integer"}),
    msgspec.inspect.ListType: frozenset({"array"}),
    msgspec.inspect.TupleType: frozenset({"array"}),
    msgspec.inspect.VarTupleType: frozenset({"array"}),
    msgspec.inspect.SetType: frozenset({"array"}),
    msgspec.inspect.FrozenSetType: frozenset({"array"}),
    msgspec.inspect.DictType: frozenset({"object"}),
    msgspec.inspect.StructType: frozenset({"object"}),
    msgspec.inspect.TypedDictType: frozenset({"object"}),
}
_ANY_KIND = frozenset(_JSON_KIND_OF.values())
_KIND_ORDER = ("null", "boolean", "integer", "number", "string", "array", "object")


class _Group(msgspec.Struct, frozen=True):
    """The declared fields of one (possibly nested) Struct, keyed by their JSON names."""

    prefix: str  # "" for the top level, e.g. "quotes.*." for a mapping of Structs
    kinds: dict[str, frozenset[str]]  # JSON name -> accepted JSON kinds
    nested: dict[str, tuple[_Group, bool]]  # JSON name -> (group, True if a mapping of Structs)


def json_kind(value: Any) -> str:
    """The JSON type name of a decoded JSON value ("number", "string", ...)."""
    kind = _JSON_KIND_OF.get(type(value))
    if kind is not None:
        return kind
    # Subclasses (e.g. feedparser's dict) and non-JSON values fall back to an isinstance walk.
    for py_type, name in _JSON_KIND_OF.items():
        if isinstance(value, py_type):
            return name
    return type(value).__name__


def _accepted_kinds(info: msgspec.inspect.Type) -> frozenset[str]:
    if isinstance(info, msgspec.inspect.UnionType):
        kinds: frozenset[str] = frozenset()
        for member in info.types:
            kinds |= _accepted_kinds(member)
        return kinds
    if isinstance(info, msgspec.inspect.Metadata):
        return _accepted_kinds(info.type)
    return _KINDS_OF_INSPECT_TYPE.get(type(info), _ANY_KIND)


def _nested_struct(info: msgspec.inspect.Type) -> tuple[msgspec.inspect.StructType, bool] | None:
    """The Struct a field holds, directly / in an Optional (False) or as mapping values (True)."""
    if isinstance(info, msgspec.inspect.StructType):
        return info, False
    if isinstance(info, msgspec.inspect.DictType) and isinstance(
        info.value_type, msgspec.inspect.StructType
    ):
        return info.value_type, True
    if isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            found = _nested_struct(member)
            if found is not None:
                return found
    return None


def _build_group(info: msgspec.inspect.StructType, prefix: str) -> _Group:
    kinds: dict[str, frozenset[str]] = {}
    nested: dict[str, tuple[_Group, bool]] = {}
    for field in info.fields:
        kinds[field.encode_name] = _accepted_kinds(field.type)
        found = _nested_struct(field.type)
        if found is not None:
            struct_info, is_mapping = found
            sub_prefix = f"{prefix}{field.encode_name}.{'*.' if is_mapping else ''}"
            nested[field.encode_name] = (_build_group(struct_info, sub_prefix), is_mapping)
    return _Group(prefix=prefix, kinds=kinds, nested=nested)


@functools.cache
def _schema(struct_type: type[msgspec.Struct]) -> _Group:
    # Inspecting a Struct is far slower than a dict lookup, and types never change at run time.
    info = msgspec.inspect.type_info(struct_type)
    assert isinstance(info, msgspec.inspect.StructType)
    return _build_group(info, "")


class _Observed:
    """What one group's payload dicts carried: keys seen, first samples, type mismatches."""

    __slots__ = ("dicts_seen", "samples", "type_changed")

    def __init__(self) -> None:
        self.dicts_seen = 0
        self.samples: dict[str, Any] = {}  # every key seen -> its first value
        self.type_changed: dict[str, Any] = {}  # declared key -> first value of a wrong kind


def _observe(group: _Group, payload: Mapping[str, Any], observed: dict[str, _Observed]) -> None:
    state = observed.setdefault(group.prefix, _Observed())
    state.dicts_seen += 1
    kinds, samples, changed = group.kinds, state.samples, state.type_changed
    for key, value in payload.items():
        if key not in samples:
            samples[key] = value
        accepted = kinds.get(key)
        # One dict lookup and one set test per key: cheap enough to run on every item.
        if accepted is not None and key not in changed and json_kind(value) not in accepted:
            changed[key] = value
        sub = group.nested.get(key)
        if sub is not None and isinstance(value, Mapping):
            sub_group, is_mapping = sub
            for child in value.values() if is_mapping else (value,):
                if isinstance(child, Mapping):
                    _observe(sub_group, child, observed)


def _normalized(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _closest(name: str, candidates: Iterable[str]) -> tuple[str, float] | None:
    best: tuple[str, float] | None = None
    target = _normalized(name)
    for candidate in candidates:
        ratio = difflib.SequenceMatcher(None, target, _normalized(candidate)).ratio()
        if ratio >= CANDIDATE_MIN_RATIO and (best is None or ratio > best[1]):
            best = (candidate, ratio)
    return best


def small_sample(value: Any) -> Any:
    """``value`` itself when its JSON form is short; otherwise a truncated text preview."""
    try:
        encoded = msgspec.json.encode(value).decode()
    except (TypeError, ValueError):
        encoded = repr(value)
    else:
        if len(encoded) <= SAMPLE_MAX_CHARS:
            return value
    if isinstance(value, str):
        return value[:SAMPLE_MAX_CHARS] + "…"
    return encoded[:SAMPLE_MAX_CHARS] + "…"


def _kinds_text(kinds: frozenset[str]) -> str:
    return " | ".join(kind for kind in _KIND_ORDER if kind in kinds) or "any"


def _group_events(group: _Group, state: _Observed) -> list[DriftEvent]:
    events: list[DriftEvent] = []
    added = [key for key in state.samples if key not in group.kinds]
    for key in added:
        events.append(
            DriftEvent(
                field=group.prefix + key,
                change="added",
                observed_type=json_kind(state.samples[key]),
                sample=small_sample(state.samples[key]),
            )
        )
    for key, kinds in group.kinds.items():
        if key in state.samples:
            continue
        match = _closest(key, added)
        events.append(
            DriftEvent(
                field=group.prefix + key,
                change="removed",
                expected_type=_kinds_text(kinds),
                candidate_field=None if match is None else group.prefix + match[0],
                similarity=None if match is None else round(match[1], 3),
            )
        )
    for key, value in state.type_changed.items():
        events.append(
            DriftEvent(
                field=group.prefix + key,
                change="type_changed",
                expected_type=_kinds_text(group.kinds[key]),
                observed_type=json_kind(value),
                sample=small_sample(value),
            )
        )
    return events


def _all_groups(group: _Group) -> Iterable[_Group]:
    yield group
    for sub_group, _ in group.nested.values():
        yield from _all_groups(sub_group)


def detect_drift(
    struct_type: type[msgspec.Struct], items: Iterable[Mapping[str, Any]]
) -> list[DriftEvent]:
    """Drift events of ``items`` (decoded JSON objects) against ``struct_type``'s fields.

    At most one event per field and change. Items that are not objects are ignored (they are
    rejects, not drift). A nested group that was never seen (e.g. every ``roi`` was null)
    reports nothing, because absence of evidence is not a removed field.
    """
    root = _schema(struct_type)
    observed: dict[str, _Observed] = {}
    for raw in items:
        item: object = raw
        if isinstance(item, Mapping):
            _observe(root, item, observed)
    events: list[DriftEvent] = []
    for group in _all_groups(root):
        state = observed.get(group.prefix)
        if state is not None and state.dicts_seen:
            events.extend(_group_events(group, state))
    return events
