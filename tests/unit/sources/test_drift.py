"""Schema drift detection against msgspec Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from cryptoetl.sources.base import DriftEvent
from cryptoetl.sources.drift import detect_drift, json_kind, small_sample


class Roi(msgspec.Struct):
    times: float
    currency: str


class Quote(msgspec.Struct):
    price: float
    volume_24h: float | None = None


class Coin(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1)]
    current_price: Annotated[float, msgspec.Meta(ge=0)] | None = None
    market_cap_rank: int | None = None
    last_updated: datetime | None = None
    roi: Roi | None = None


class Ticker(msgspec.Struct):
    id: str
    quotes: dict[str, Quote] = msgspec.field(default_factory=dict)


def coin(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "bitcoin",
        "current_price": 69000.5,
        "market_cap_rank": 1,
        "last_updated": "2024-11-05T11:50:00.000Z",
        "roi": None,
    }
    item.update(overrides)
    return item


def by_change(events: list[DriftEvent]) -> dict[tuple[str, str], DriftEvent]:
    return {(e.field, e.change): e for e in events}


def test_matching_payloads_have_no_drift() -> None:
    assert detect_drift(Coin, [coin(), coin(id="ethereum", current_price=2400)]) == []


def test_no_items_means_no_drift() -> None:
    assert detect_drift(Coin, []) == []


def test_added_field_reports_type_and_sample() -> None:
    events = detect_drift(Coin, [coin(), coin(fdv_usd=12.5)])
    assert events == [
        DriftEvent(field="fdv_usd", change="added", observed_type="number", sample=12.5)
    ]


def test_renamed_field_is_removed_with_candidate_and_added() -> None:
    items = [coin(), coin()]
    for item in items:
        item["current_price_usd"] = item.pop("current_price")
    events = by_change(detect_drift(Coin, items))
    assert set(events) == {("current_price", "removed"), ("current_price_usd", "added")}
    removed = events["current_price", "removed"]
    assert removed.candidate_field == "current_price_usd"
    assert removed.expected_type == "null | integer | number"
    assert removed.similarity is not None
    assert 0.6 <= removed.similarity <= 1
    assert removed.similarity == round(removed.similarity, 3)


def test_removed_field_without_similar_name_has_no_candidate() -> None:
    item = coin(completely_unrelated=1)
    del item["market_cap_rank"]
    removed = by_change(detect_drift(Coin, [item]))["market_cap_rank", "removed"]
    assert removed.candidate_field is None
    assert removed.similarity is None


def test_field_present_in_some_items_is_not_removed() -> None:
    partial = coin()
    del partial["last_updated"]
    assert detect_drift(Coin, [partial, coin()]) == []


def test_type_changed_once_per_field() -> None:
    items = [coin(current_price="69000.5"), coin(current_price="1.0"), coin(current_price=None)]
    events = detect_drift(Coin, items)
    assert events == [
        DriftEvent(
            field="current_price",
            change="type_changed",
            expected_type="null | integer | number",
            observed_type="string",
            sample="69000.5",
        )
    ]


def test_int_is_a_float_but_float_is_not_an_int() -> None:
    assert detect_drift(Coin, [coin(current_price=69000)]) == []
    events = detect_drift(Coin, [coin(market_cap_rank=1.5)])
    assert [(e.field, e.change, e.observed_type) for e in events] == [
        ("market_cap_rank", "type_changed", "number")
    ]


def test_each_field_reported_once_across_many_items() -> None:
    items = [coin(extra=i, current_price="x") for i in range(500)]
    events = detect_drift(Coin, items)
    assert sorted((e.field, e.change) for e in events) == [
        ("current_price", "type_changed"),
        ("extra", "added"),
    ]
    assert by_change(events)["extra", "added"].sample == 0


def test_nested_struct_fields_are_checked_when_present() -> None:
    events = detect_drift(Coin, [coin(roi={"times": "3.5", "currency": "usd", "pct": 350})])
    assert sorted((e.field, e.change) for e in events) == [
        ("roi.pct", "added"),
        ("roi.times", "type_changed"),
    ]


def test_nested_group_never_seen_reports_nothing() -> None:
    # Every roi is null: we cannot tell whether its fields still exist.
    assert detect_drift(Coin, [coin(roi=None)]) == []


def test_mapping_of_structs_uses_wildcard_path() -> None:
    items = [{"id": "btc-bitcoin", "quotes": {"USD": {"price_usd": 1.0, "volume_24h": 2.0}}}]
    events = by_change(detect_drift(Ticker, items))
    assert set(events) == {("quotes.*.price", "removed"), ("quotes.*.price_usd", "added")}
    assert events["quotes.*.price", "removed"].candidate_field == "quotes.*.price_usd"


def test_non_object_items_are_ignored() -> None:
    assert detect_drift(Coin, [coin(), 42, "bitcoin", None, [1]]) == []  # type: ignore[list-item]


def test_long_samples_are_truncated() -> None:
    events = detect_drift(Coin, [coin(description="x" * 5000)])
    sample = events[0].sample
    assert isinstance(sample, str)
    assert len(sample) <= 121
    assert sample.endswith("…")


def test_small_sample_keeps_short_values_and_previews_big_ones() -> None:
    assert small_sample({"a": 1}) == {"a": 1}
    big = small_sample(list(range(1000)))
    assert isinstance(big, str)
    assert big.startswith("[0,1,2")


def test_json_kind_names() -> None:
    kinds = [json_kind(v) for v in (None, True, 1, 1.5, "s", [], {})]
    assert kinds == ["null", "boolean", "integer", "number", "string", "array", "object"]
