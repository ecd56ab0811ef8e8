"""Live replay: the recorded fixtures moved to the current time step, prices on the walk.

Upstream refreshes are modelled by a time step (:data:`DEFAULT_STEP_S`, 60 s, about how often
CoinGecko and CoinPaprika refresh their tickers): every request within one step gets the same
bytes, the next step moves every price once and every timestamp to that step's start.

* **Markets** (CoinGecko ``/coins/markets``, CoinPaprika ``/v1/tickers``): ``last_updated`` is the
  step's start, in the recording's format. Prices follow :mod:`cryptoetl.stub.walk` from the
  recorded price, per symbol (so CoinGecko's and CoinPaprika's BTC move together, keeping their
  recorded spread); market caps, volumes and 24 h highs/lows scale with the price; the trailing
  changes (24 h, or CoinPaprika's 15 min to 1 year) are the walk's own change over that span;
  ATH/ATL follow a price that passes them. No key is added or removed and a recorded integer
  stays an integer, so a live body has the recording's schema.
* **Feeds** (RSS and Atom): every date (``pubDate``, ``lastBuildDate``, ``published``,
  ``updated``, ``dc:date``) moves by one offset that puts the newest on the step's start; the
  spacing between entries and each date's own format and time zone are kept.

A body that is not what the recording should be (not a JSON array of objects, a feed without a
date) is served as it is: a test's hostile fixture stays hostile.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import msgspec

from cryptoetl.stub.walk import params_for, price_factor

DEFAULT_STEP_S = 60
DEFAULT_SEED = 0
DAY_S = 86_400
# Like the real APIs: cents for large values (69163.42, 38514290112.41), six significant digits
# for small ones (0.0000891234).
SIGNIFICANT_DIGITS = 6
MIN_DECIMALS = 2

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Moment:
    """One time step of the live stub: its index (the walk's clock) and when it started."""

    step: int
    step_s: int

    @classmethod
    def at(cls, timestamp: float, step_s: int) -> Moment:
        return cls(step=math.floor(timestamp / step_s), step_s=step_s)

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.step * self.step_s, UTC)

    def steps_in(self, span_s: int) -> int:
        """How many steps back a trailing span reaches (at least one)."""
        return max(1, round(span_s / self.step_s))


@dataclass(frozen=True)
class CoinWalk:
    """One coin's walk from its recorded price, as seen at one moment."""

    seed: int
    symbol: str
    recorded_price: float
    moment: Moment

    def factor(self, ago_s: int = 0) -> float:
        """Price ``ago_s`` seconds back (now when 0) divided by the recorded price."""
        step = self.moment.step - (self.moment.steps_in(ago_s) if ago_s else 0)
        return price_factor(self.seed, self.symbol, params_for(self.recorded_price), step)

    def change_pct(self, span_s: int) -> float:
        return (self.factor() / self.factor(span_s) - 1.0) * 100.0


# --------------------------------------------------------------------------- numbers


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _rounded(value: float) -> float:
    if value == 0.0:
        return 0.0
    magnitude = math.floor(math.log10(abs(value)))
    return round(value, max(MIN_DECIMALS, SIGNIFICANT_DIGITS - 1 - magnitude))


def _like(recorded: object, value: float) -> float | int:
    """``value`` in the recorded value's JSON type: an integer stays an integer."""
    return round(value) if isinstance(recorded, int) else _rounded(value)


def _scale(obj: JsonObject, keys: Iterable[str], factor: float) -> None:
    for key in keys:
        recorded = obj.get(key)
        number = _number(recorded)
        if number is not None:
            obj[key] = _like(recorded, number * factor)


def _set_changes(obj: JsonObject, spans: Mapping[str, int], walk: CoinWalk) -> None:
    for key, span_s in spans.items():
        if _number(obj.get(key)) is not None:
            obj[key] = _rounded(walk.change_pct(span_s))


def _timestamp_like(recorded: str, when: datetime) -> str:
    """``when`` as an ISO 8601 UTC timestamp, with milliseconds if the recording had them."""
    whole = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{when.microsecond // 1000:03d}Z" if "." in recorded else f"{whole}Z"


@dataclass(frozen=True)
class Extreme:
    """An all-time high or low: its price, its date and the current price's distance to it."""

    price: str
    date: str
    distance_pct: str
    is_beaten: Callable[[float, float], bool]  # (current, recorded extreme)


def _follow_extreme(obj: JsonObject, extreme: Extreme, price: float, now: datetime) -> None:
    recorded = _number(obj.get(extreme.price))
    if recorded is None or recorded <= 0:
        return
    if extreme.is_beaten(price, recorded):
        obj[extreme.price] = _like(obj[extreme.price], price)
        if isinstance(obj.get(extreme.date), str):
            obj[extreme.date] = _timestamp_like(obj[extreme.date], now)
        recorded = price
    if _number(obj.get(extreme.distance_pct)) is not None:
        obj[extreme.distance_pct] = _rounded((price / recorded - 1.0) * 100.0)


def _move_last_updated(obj: JsonObject, now: datetime) -> None:
    if isinstance(obj.get("last_updated"), str):
        obj["last_updated"] = _timestamp_like(obj["last_updated"], now)


def _walk_of(coin: JsonObject, price: object, seed: int, moment: Moment) -> CoinWalk | None:
    recorded = _number(price)
    symbol = coin.get("symbol") or coin.get("id")
    if recorded is None or recorded <= 0 or not isinstance(symbol, str):
        return None
    return CoinWalk(seed=seed, symbol=symbol.lower(), recorded_price=recorded, moment=moment)


def _move_items(body: bytes, move: Callable[[JsonObject], None]) -> bytes:
    try:
        items = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return body
    for item in items:
        move(item)
    return msgspec.json.encode(items)


# --------------------------------------------------------------------------- CoinGecko

GECKO_SCALED = (
    "current_price",
    "market_cap",
    "fully_diluted_valuation",
    "total_volume",
    "high_24h",
    "low_24h",
)
GECKO_CHANGES = {"price_change_percentage_24h": DAY_S, "market_cap_change_percentage_24h": DAY_S}
GECKO_ABSOLUTE_CHANGES = {
    "price_change_24h": "current_price",
    "market_cap_change_24h": "market_cap",
}
GECKO_ATH = Extreme("ath", "ath_date", "ath_change_percentage", lambda now, ath: now > ath)
GECKO_ATL = Extreme("atl", "atl_date", "atl_change_percentage", lambda now, atl: now < atl)


def live_markets(body: bytes, seed: int, moment: Moment) -> bytes:
    """A CoinGecko ``/coins/markets`` page as it would be at ``moment``."""
    return _move_items(body, lambda coin: _move_gecko_coin(coin, seed, moment))


def _move_gecko_coin(coin: JsonObject, seed: int, moment: Moment) -> None:
    _move_last_updated(coin, moment.start)
    walk = _walk_of(coin, coin.get("current_price"), seed, moment)
    if walk is None:
        return
    now, day_ago = walk.factor(), walk.factor(DAY_S)
    for change_key, level_key in GECKO_ABSOLUTE_CHANGES.items():
        level = _number(coin.get(level_key))
        if level is not None and _number(coin.get(change_key)) is not None:
            coin[change_key] = _rounded(level * (now - day_ago))
    _scale(coin, GECKO_SCALED, now)
    _set_changes(coin, GECKO_CHANGES, walk)
    price = walk.recorded_price * now
    _keep_price_in_day_range(coin, price, walk.recorded_price * day_ago)
    _follow_extreme(coin, GECKO_ATH, price, moment.start)
    _follow_extreme(coin, GECKO_ATL, price, moment.start)


def _keep_price_in_day_range(coin: JsonObject, price: float, day_ago: float) -> None:
    """The scaled 24 h high and low widened to hold the prices the walk had then and now."""
    for key, pick in (("high_24h", max), ("low_24h", min)):
        scaled = _number(coin.get(key))
        if scaled is not None:
            coin[key] = _like(coin[key], pick(scaled, price, day_ago))


# --------------------------------------------------------------------------- CoinPaprika

PAPRIKA_QUOTE = "USD"  # the quote we request; its price is the one the walk follows
PAPRIKA_SCALED = ("price", "volume_24h", "market_cap")
PAPRIKA_CHANGES = {
    "percent_change_15m": 15 * 60,
    "percent_change_30m": 30 * 60,
    "percent_change_1h": 3600,
    "percent_change_6h": 6 * 3600,
    "percent_change_12h": 12 * 3600,
    "percent_change_24h": DAY_S,
    "percent_change_7d": 7 * DAY_S,
    "percent_change_30d": 30 * DAY_S,
    "percent_change_1y": 365 * DAY_S,
    "market_cap_change_24h": DAY_S,  # a percentage, and supply does not move: the price's change
}
PAPRIKA_ATH = Extreme("ath_price", "ath_date", "percent_from_price_ath", lambda now, ath: now > ath)


def live_tickers(body: bytes, seed: int, moment: Moment) -> bytes:
    """A CoinPaprika ``/v1/tickers`` body as it would be at ``moment``."""
    return _move_items(body, lambda ticker: _move_paprika_ticker(ticker, seed, moment))


def _move_paprika_ticker(ticker: JsonObject, seed: int, moment: Moment) -> None:
    _move_last_updated(ticker, moment.start)
    quotes = ticker.get("quotes")
    quote = quotes.get(PAPRIKA_QUOTE) if isinstance(quotes, dict) else None
    if not isinstance(quote, dict):
        return
    walk = _walk_of(ticker, quote.get("price"), seed, moment)
    if walk is None:
        return
    _scale(quote, PAPRIKA_SCALED, walk.factor())
    _set_changes(quote, PAPRIKA_CHANGES, walk)
    _follow_extreme(quote, PAPRIKA_ATH, walk.recorded_price * walk.factor(), moment.start)


# --------------------------------------------------------------------------- feeds

_RFC822_DATE = re.compile(rb"<(pubDate|lastBuildDate)>([^<]+)</\1>")
_ISO_DATE = re.compile(rb"<(published|updated|dc:date)>([^<]+)</\1>")


@dataclass(frozen=True)
class DateFormat:
    """How a feed writes one kind of date: parsed to an aware datetime and back."""

    pattern: re.Pattern[bytes]
    parse: Callable[[str], datetime]
    render: Callable[[str, datetime], str]  # (the recorded text, the new date)


def _parse_rfc822(text: str) -> datetime:
    parsed = parsedate_to_datetime(text)  # TypeError or ValueError when it is not a date
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _render_rfc822(recorded: str, when: datetime) -> str:
    if recorded.rstrip().endswith(("GMT", "UT")):
        return format_datetime(when.astimezone(UTC), usegmt=True)
    return format_datetime(when)


def _parse_iso(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _render_iso(recorded: str, when: datetime) -> str:
    text = when.isoformat()
    return text.removesuffix("+00:00") + "Z" if recorded.strip().endswith("Z") else text


FEED_DATES = (
    DateFormat(_RFC822_DATE, _parse_rfc822, _render_rfc822),
    DateFormat(_ISO_DATE, _parse_iso, _render_iso),
)


def _parsed(date_format: DateFormat, raw: bytes) -> datetime | None:
    try:
        return date_format.parse(raw.decode())
    except (TypeError, ValueError, IndexError, UnicodeDecodeError):
        return None  # not a date we can move: it stays as recorded


def live_feed(body: bytes, moment: Moment) -> tuple[bytes, datetime | None]:
    """The feed with its newest date on ``moment``'s start, and that date (``None``: no date)."""
    dates = [
        when
        for date_format in FEED_DATES
        for match in date_format.pattern.finditer(body)
        if (when := _parsed(date_format, match.group(2))) is not None
    ]
    if not dates:
        return body, None
    offset = moment.start - max(dates)
    for date_format in FEED_DATES:
        body = date_format.pattern.sub(functools.partial(_shifted, date_format, offset), body)
    return body, moment.start


def _shifted(date_format: DateFormat, offset: timedelta, match: re.Match[bytes]) -> bytes:
    when = _parsed(date_format, match.group(2))
    if when is None:
        return match.group(0)
    try:
        moved = when + offset
    except OverflowError:  # a date near year 1 or 9999 among ordinary ones stays as recorded
        return match.group(0)
    tag = match.group(1)
    text = date_format.render(match.group(2).decode(), moved).encode()
    return b"<" + tag + b">" + text + b"</" + tag + b">"
