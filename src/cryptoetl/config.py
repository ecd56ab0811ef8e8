"""Configuration, read once from the environment into one typed settings object.

Every variable the service understands is declared here and documented in `.env.example`.
Secrets (API keys, database passwords) are wrapped in :class:`Secret` so that `repr`, logs and
error messages never show them. Credentials written into configured URLs (a token in an RSS
feed's query string, ``user:pass@``) are secrets too: :meth:`Settings.secret_values` lists them
for the redactors and URLs are only ever shown through :func:`cryptoetl.redaction.redact_url`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Literal, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from cryptoetl.redaction import Redactor, url_credentials
from cryptoetl.redaction import redact_url as redact_url  # re-exported: cryptoetl.dev shows URLs

DEFAULT_RSS_FEEDS = ("https://cointelegraph.com/rss",)
DEFAULT_COINPAPRIKA_BASE_URL = "https://api.coinpaprika.com"
DEFAULT_COINGECKO_BASE_URL = "https://api.coingecko.com/api/v3"
SOURCE_TYPES = ("csv", "coinpaprika", "coingecko", "rss")
LogFormat = Literal["auto", "json", "console"]
AccessLog = Literal["errors", "off", "all"]
CrossOriginRedirects = Literal["strip", "refuse"]
# The choices of each, the default first.
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")
ACCESS_LOGS: tuple[AccessLog, ...] = ("errors", "off", "all")
CROSS_ORIGIN_REDIRECTS: tuple[CrossOriginRedirects, ...] = ("strip", "refuse")
# The largest real answer is CoinPaprika's /v1/tickers (every active coin, about 0.7 KB each:
# a few MB); 32 MiB leaves room to grow while bounding what a hostile upstream can make us hold.
DEFAULT_HTTP_MAX_BODY_BYTES = 32 * 1024 * 1024
# CoinGecko pages hold at most 250 coins, feeds tens of entries; CoinPaprika lists every coin.
DEFAULT_MAX_ITEMS_PER_PAGE = 50_000


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class Secret:
    """A string that never shows itself in repr/str; call :meth:`reveal` where it is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class DatabaseUrl:
    """A plain ``postgresql://user:pass@host:port/db`` URL; the password is never displayed.

    Users give URLs as every PostgreSQL tool takes them; which driver we use is our business,
    so :meth:`sqlalchemy_url` adds it.
    """

    __slots__ = ("_url",)

    def __init__(self, url: str, variable: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                f"{variable} must be a postgresql://user:password@host:port/database URL, "
                f"got {redact_url(url)!r}"
            )
        try:
            _ = parts.port
        except ValueError:
            raise ConfigError(f"{variable} has an invalid port: {redact_url(url)!r}") from None
        if not parts.path.strip("/"):
            raise ConfigError(f"{variable} must name a database: {redact_url(url)!r}")
        self._url = url

    def reveal(self) -> str:
        return self._url

    @property
    def database(self) -> str:
        return urlsplit(self._url).path.lstrip("/")

    def sqlalchemy_url(self) -> str:
        """The same URL for SQLAlchemy's asyncpg driver (``sslmode`` becomes asyncpg's ``ssl``)."""
        parts = urlsplit(self._url)
        query = [("ssl", v) if k == "sslmode" else (k, v) for k, v in parse_qsl(parts.query)]
        return urlunsplit(("postgresql+asyncpg", parts.netloc, parts.path, urlencode(query), ""))

    def __repr__(self) -> str:
        return f"DatabaseUrl({redact_url(self._url)!r})"

    __str__ = __repr__


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """All settings of worker, API and stub upstream. Built by :func:`load_settings`."""

    database_url: DatabaseUrl | None
    api_database_url: DatabaseUrl | None
    log_level: str = "INFO"
    log_format: LogFormat = "auto"
    access_log: AccessLog = "errors"
    # Group roles created by the migrations; login users join them (deploy/postgres/).
    writer_role: str = "cryptoetl_writer"
    reader_role: str = "cryptoetl_reader"
    # Sources
    csv_paths: tuple[str, ...] = ()
    csv_column_map: str = ""
    # Limits of the CSV reader: what one file may make it hold (see README "CSV files").
    csv_max_line_bytes: int = 65_536
    csv_max_fields: int = 512
    csv_max_record_lines: int = 10
    coinpaprika_base_url: str = DEFAULT_COINPAPRIKA_BASE_URL
    coinpaprika_api_key: Secret = Secret("")
    coingecko_base_url: str = DEFAULT_COINGECKO_BASE_URL
    coingecko_api_key: Secret = Secret("")
    coingecko_pages: int = 1
    coingecko_per_page: int = 250
    rss_feed_urls: tuple[str, ...] = DEFAULT_RSS_FEEDS
    enabled_sources: tuple[str, ...] = SOURCE_TYPES
    # HTTP policy
    http_timeout_s: float = 20.0
    http_max_attempts: int = 5
    http_max_wait_s: float = 120.0
    rate_limit_rpm: Mapping[str, int] = msgspec.field(default_factory=dict)
    http_max_body_bytes: int = DEFAULT_HTTP_MAX_BODY_BYTES
    http_cross_origin_redirects: CrossOriginRedirects = "strip"
    max_items_per_page: int = DEFAULT_MAX_ITEMS_PER_PAGE
    # Worker
    batch_size: int = 20_000
    max_new_assets_per_run: int = 10_000
    intervals_s: Mapping[str, int] = msgspec.field(default_factory=dict)
    etl_fail_after: tuple[str, int] | None = None
    # How long `worker --once` waits for an unavailable database (the daemon waits for good).
    db_wait_s: float = 30.0
    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 1
    api_statement_timeout_ms: int = 5000
    api_lock_timeout_ms: int = 2000
    stale_after_s: int = 3600
    # FRESHNESS_S overrides: the most a source's newest observation may lag (0: never stale).
    freshness_s: Mapping[str, int] = msgspec.field(default_factory=dict)

    def secret_values(self) -> list[str]:
        """Every secret in clear, for redactors (logs, stored errors); never print this.

        API keys, database passwords and every credential found in a configured http(s) URL.
        """
        values = [self.coinpaprika_api_key.reveal(), self.coingecko_api_key.reveal()]
        for database_url in (self.database_url, self.api_database_url):
            if database_url is not None:
                values += url_credentials(database_url.reveal())
        for url in (self.coinpaprika_base_url, self.coingecko_base_url, *self.rss_feed_urls):
            values += url_credentials(url)
        return [v for v in dict.fromkeys(values) if v]

    def redactor(self) -> Redactor:
        """The redactor of every secret of these settings."""
        return Redactor(self.secret_values())

    def interval_for(self, source: str) -> int:
        return self.intervals_s.get(source, DEFAULT_INTERVALS_S[source])

    def freshness_for(self, source: str) -> int | None:
        """How old a source's newest observation may be before its data counts as stale, in
        seconds; ``None``: never stale (see :data:`DEFAULT_FRESHNESS`)."""
        if source in self.freshness_s:
            return self.freshness_s[source] or None
        rule = DEFAULT_FRESHNESS[source]
        if rule is None:
            return None
        intervals, floor_s = rule
        return max(intervals * self.interval_for(source), floor_s)

    def require_database_url(self) -> DatabaseUrl:
        if self.database_url is None:
            raise ConfigError("DATABASE_URL is required (postgresql://user:password@host:port/db)")
        return self.database_url

    def require_api_database_url(self) -> DatabaseUrl:
        url = self.api_database_url or self.database_url
        if url is None:
            raise ConfigError("API_DATABASE_URL is required (the read-only role's URL)")
        return url


# Free tiers: CoinGecko demo allows ~30 calls/min, CoinPaprika free 20k calls/month (~1 call
# every 2-3 min on average), so the schedule keeps CoinPaprika well inside its monthly quota.
DEFAULT_INTERVALS_S = {"csv": 60, "coinpaprika": 300, "coingecko": 300, "rss": 600}
# Default freshness per source: (intervals, floor in seconds), the larger wins; None: exempt.
# Snapshots (a price every run): three intervals, i.e. two missed runs plus the upstream's own
# lag. News: upstream publishing is irregular (nights, weekends), so at least 6 h. CSV files are
# history (an export that ended long ago is not stale): exempt unless FRESHNESS_S names csv.
DEFAULT_FRESHNESS: dict[str, tuple[int, int] | None] = {
    "csv": None,
    "coinpaprika": (3, 0),
    "coingecko": (3, 0),
    "rss": (3, 6 * 3600),
}
DEFAULT_RATE_LIMIT_RPM = {"api.coingecko.com": 25, "api.coinpaprika.com": 10}


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {raw!r}")
    return value


def _pairs(env: Mapping[str, str], name: str) -> dict[str, int]:
    """Parse ``key=int,key=int`` (e.g. ``INTERVALS=csv=60,rss=600``)."""
    result: dict[str, int] = {}
    for item in _split_list(env.get(name, "")):
        key, sep, value = item.rpartition("=")
        if not sep or not key or not value.strip().isdigit():
            raise ConfigError(f"{name} must look like key=integer,key=integer; bad item {item!r}")
        result[key.strip()] = int(value)
    return result


def _freshness(env: Mapping[str, str]) -> dict[str, int]:
    pairs = _pairs(env, "FRESHNESS_S")
    unknown = sorted(set(pairs) - set(SOURCE_TYPES))
    if unknown:
        raise ConfigError(f"FRESHNESS_S has unknown sources {unknown}; known: {SOURCE_TYPES}")
    return pairs


def _database_url(env: Mapping[str, str], name: str) -> DatabaseUrl | None:
    raw = env.get(name, "").strip()
    return DatabaseUrl(raw, name) if raw else None


def _http_url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {redact_url(raw)!r}")
    return raw.rstrip("/")


def _rss_feed_urls(env: Mapping[str, str]) -> tuple[str, ...]:
    urls = _split_list(env.get("RSS_FEED_URLS", "")) or DEFAULT_RSS_FEEDS
    shown: dict[str, str] = {}
    for url in urls:
        _http_url({"RSS_FEED_URLS": url}, "RSS_FEED_URLS", url)
        # A feed is known by its redacted URL (cursor keys, stored metadata, messages), so two
        # feeds may not differ only in their credentials.
        display = redact_url(url)
        if shown.setdefault(display, url) != url:
            raise ConfigError(f"RSS_FEED_URLS lists {display!r} twice, with different credentials")
    return urls


Choice = TypeVar("Choice", bound=str)


def _choice(env: Mapping[str, str], name: str, choices: tuple[Choice, ...]) -> Choice:
    """One of ``choices`` (case-insensitive); empty means the first."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return choices[0]
    for choice in choices:
        if raw == choice:
            return choice
    raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {raw!r}")


def _role(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", raw):
        raise ConfigError(f"{name} must be a lower-case SQL identifier, got {raw!r}")
    return raw


def _sources(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = _split_list(env.get("ENABLED_SOURCES", ""))
    unknown = sorted(set(raw) - set(SOURCE_TYPES))
    if unknown:
        raise ConfigError(f"ENABLED_SOURCES has unknown sources {unknown}; known: {SOURCE_TYPES}")
    return raw or SOURCE_TYPES


def _fail_after(env: Mapping[str, str]) -> tuple[str, int] | None:
    raw = env.get("ETL_FAIL_AFTER", "").strip()
    if not raw:
        return None
    source, sep, count = raw.partition(":")
    if not sep or source not in SOURCE_TYPES or not count.isdigit():
        raise ConfigError(f"ETL_FAIL_AFTER must look like <source>:<n>, got {raw!r}")
    return source, int(count)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``env`` (default: ``os.environ``); raise :class:`ConfigError`."""
    env = os.environ if env is None else env
    log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    return Settings(
        database_url=_database_url(env, "DATABASE_URL"),
        api_database_url=_database_url(env, "API_DATABASE_URL"),
        log_level=log_level,
        log_format=_choice(env, "LOG_FORMAT", LOG_FORMATS),
        access_log=_choice(env, "ACCESS_LOG", ACCESS_LOGS),
        writer_role=_role(env, "DB_WRITER_ROLE", "cryptoetl_writer"),
        reader_role=_role(env, "DB_READER_ROLE", "cryptoetl_reader"),
        csv_paths=_split_list(env.get("CSV_PATHS", "")),
        csv_column_map=env.get("CSV_COLUMN_MAP", "").strip(),
        csv_max_line_bytes=_int(env, "CSV_MAX_LINE_BYTES", 65_536, minimum=1024),
        csv_max_fields=_int(env, "CSV_MAX_FIELDS", 512, minimum=2),
        csv_max_record_lines=_int(env, "CSV_MAX_RECORD_LINES", 10, minimum=1),
        coinpaprika_base_url=_http_url(env, "COINPAPRIKA_BASE_URL", DEFAULT_COINPAPRIKA_BASE_URL),
        coinpaprika_api_key=Secret(env.get("COINPAPRIKA_API_KEY", "").strip()),
        coingecko_base_url=_http_url(env, "COINGECKO_BASE_URL", DEFAULT_COINGECKO_BASE_URL),
        coingecko_api_key=Secret(env.get("COINGECKO_API_KEY", "").strip()),
        coingecko_pages=_int(env, "COINGECKO_PAGES", 1, minimum=1),
        coingecko_per_page=_int(env, "COINGECKO_PER_PAGE", 250, minimum=1),
        rss_feed_urls=_rss_feed_urls(env),
        enabled_sources=_sources(env),
        http_timeout_s=_float(env, "HTTP_TIMEOUT_S", 20.0),
        http_max_attempts=_int(env, "HTTP_MAX_ATTEMPTS", 5, minimum=1),
        http_max_wait_s=_float(env, "HTTP_MAX_WAIT_S", 120.0),
        rate_limit_rpm={**DEFAULT_RATE_LIMIT_RPM, **_pairs(env, "RATE_LIMIT_RPM")},
        http_max_body_bytes=_int(
            env, "HTTP_MAX_BODY_BYTES", DEFAULT_HTTP_MAX_BODY_BYTES, minimum=1024
        ),
        http_cross_origin_redirects=_choice(
            env, "HTTP_CROSS_ORIGIN_REDIRECTS", CROSS_ORIGIN_REDIRECTS
        ),
        max_items_per_page=_int(env, "MAX_ITEMS_PER_PAGE", DEFAULT_MAX_ITEMS_PER_PAGE, minimum=1),
        batch_size=_int(env, "BATCH_SIZE", 20_000, minimum=1),
        max_new_assets_per_run=_int(env, "MAX_NEW_ASSETS_PER_RUN", 10_000, minimum=1),
        intervals_s=_pairs(env, "INTERVALS_S"),
        etl_fail_after=_fail_after(env),
        db_wait_s=_float(env, "DB_WAIT_S", 30.0),
        api_host=env.get("API_HOST", "127.0.0.1").strip() or "127.0.0.1",
        api_port=_int(env, "API_PORT", 8000, minimum=1),
        api_workers=_int(env, "API_WORKERS", 1, minimum=1),
        api_statement_timeout_ms=_int(env, "API_STATEMENT_TIMEOUT_MS", 5000, minimum=100),
        api_lock_timeout_ms=_int(env, "API_LOCK_TIMEOUT_MS", 2000, minimum=100),
        stale_after_s=_int(env, "STALE_AFTER_S", 3600, minimum=1),
        freshness_s=_freshness(env),
    )


def load_settings_or_exit(
    *required: Callable[[Settings], object], env: Mapping[str, str] | None = None
) -> Settings:
    """:func:`load_settings`, then each of ``required`` (e.g. ``Settings.require_database_url``);
    a malformed or missing value is one line on stderr and exit status 2, the one place that
    reports a configuration error."""
    try:
        settings = load_settings(env)
        for requirement in required:
            requirement(settings)
    except ConfigError as exc:
        exit_with_error(f"configuration error: {exc}", 2)
    return settings


def exit_with_error(message: str, status: int) -> NoReturn:
    """End a command that cannot start: ``cryptoetl: <message>``, one line on stderr."""
    print(f"cryptoetl: {message}", file=sys.stderr)
    raise SystemExit(status)
