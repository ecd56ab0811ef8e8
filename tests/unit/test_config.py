"""Settings: read once from the environment, secrets never shown, bad values named."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cryptoetl.config import ConfigError, Secret, load_settings

URL = "postgresql://etl:hunter2-password@db.example:5432/cryptoetl"


def test_database_url_becomes_asyncpg_url_and_hides_password() -> None:
    settings = load_settings({"DATABASE_URL": URL + "?sslmode=require"})
    assert settings.database_url is not None
    assert settings.database_url.sqlalchemy_url() == (
        "postgresql+asyncpg://etl:hunter2-password@db.example:5432/cryptoetl?ssl=require"
    )
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.database_url)


def test_api_keys_are_redacted_in_repr() -> None:
    settings = load_settings(
        {"COINGECKO_API_KEY": "CG-secret-key", "COINPAPRIKA_API_KEY": "cp-key-1"}
    )
    assert "CG-secret-key" not in repr(settings)
    assert "cp-key-1" not in repr(settings)
    assert settings.coingecko_api_key.reveal() == "CG-secret-key"
    assert set(settings.secret_values()) == {"CG-secret-key", "cp-key-1"}
    assert repr(Secret("x")) == "Secret('***')"


def test_csv_limits_have_safe_defaults_and_can_be_set() -> None:
    defaults = load_settings({})
    assert (defaults.csv_max_line_bytes, defaults.csv_max_fields) == (65_536, 512)
    assert defaults.csv_max_record_lines == 10
    settings = load_settings(
        {"CSV_MAX_LINE_BYTES": "1048576", "CSV_MAX_FIELDS": "2000", "CSV_MAX_RECORD_LINES": "3"}
    )
    assert (settings.csv_max_line_bytes, settings.csv_max_fields) == (1_048_576, 2000)
    assert settings.csv_max_record_lines == 3


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:pw@h:notaport/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u@h:5432/"}, "DATABASE_URL"),
        ({"API_DATABASE_URL": "nonsense"}, "API_DATABASE_URL"),
        ({"COINGECKO_PAGES": "two"}, "COINGECKO_PAGES"),
        ({"COINGECKO_PAGES": "0"}, "COINGECKO_PAGES"),
        ({"COINGECKO_BASE_URL": "ftp://x"}, "COINGECKO_BASE_URL"),
        ({"RSS_FEED_URLS": "http://ok/rss, not-a-url"}, "RSS_FEED_URLS"),
        ({"ENABLED_SOURCES": "csv,twitter"}, "ENABLED_SOURCES"),
        ({"ETL_FAIL_AFTER": "csv"}, "ETL_FAIL_AFTER"),
        ({"INTERVALS_S": "csv=fast"}, "INTERVALS_S"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DB_READER_ROLE": "Robert'); DROP"}, "DB_READER_ROLE"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"ACCESS_LOG": "some"}, "ACCESS_LOG"),
        ({"HTTP_CROSS_ORIGIN_REDIRECTS": "follow"}, "HTTP_CROSS_ORIGIN_REDIRECTS"),
        ({"HTTP_MAX_BODY_BYTES": "10"}, "HTTP_MAX_BODY_BYTES"),
        ({"HTTP_MAX_BODY_BYTES": "32MB"}, "HTTP_MAX_BODY_BYTES"),
        ({"MAX_ITEMS_PER_PAGE": "0"}, "MAX_ITEMS_PER_PAGE"),
        ({"CSV_MAX_LINE_BYTES": "64k"}, "CSV_MAX_LINE_BYTES"),
        ({"CSV_MAX_LINE_BYTES": "100"}, "CSV_MAX_LINE_BYTES"),
        ({"CSV_MAX_FIELDS": "1"}, "CSV_MAX_FIELDS"),
        ({"CSV_MAX_RECORD_LINES": "0"}, "CSV_MAX_RECORD_LINES"),
        ({"DB_WAIT_S": "soon"}, "DB_WAIT_S"),
        ({"DB_WAIT_S": "0"}, "DB_WAIT_S"),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_malformed_url_error_does_not_leak_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"DATABASE_URL": "postgresql://u:topsecretpw@h:bad/db"})
    assert "topsecretpw" not in str(info.value)


def test_lists_pairs_and_defaults() -> None:
    settings = load_settings(
        {
            "CSV_PATHS": "a.csv, data/*.csv ,",
            "INTERVALS_S": "csv=30,rss=900",
            "ETL_FAIL_AFTER": "coingecko:10",
            "RATE_LIMIT_RPM": "127.0.0.1=6000",
        }
    )
    assert settings.csv_paths == ("a.csv", "data/*.csv")
    assert settings.interval_for("csv") == 30
    assert settings.interval_for("coinpaprika") == 300
    assert settings.etl_fail_after == ("coingecko", 10)
    assert settings.rate_limit_rpm["127.0.0.1"] == 6000
    assert settings.rate_limit_rpm["api.coingecko.com"] == 25
    assert settings.rss_feed_urls == ("https://cointelegraph.com/rss",)


def test_hostile_upstream_limits_and_log_settings() -> None:
    defaults = load_settings({})
    assert (defaults.log_format, defaults.access_log) == ("auto", "errors")
    assert defaults.http_max_body_bytes == 32 * 1024 * 1024
    assert defaults.http_cross_origin_redirects == "strip"
    assert defaults.max_items_per_page == 50_000
    settings = load_settings(
        {
            "LOG_FORMAT": "Console",
            "ACCESS_LOG": "off",
            "HTTP_MAX_BODY_BYTES": "1048576",
            "HTTP_CROSS_ORIGIN_REDIRECTS": "refuse",
            "MAX_ITEMS_PER_PAGE": "10",
        }
    )
    assert (settings.log_format, settings.access_log) == ("console", "off")
    assert settings.http_max_body_bytes == 1 << 20
    assert settings.http_cross_origin_redirects == "refuse"
    assert settings.max_items_per_page == 10


FEED_TOKEN = "feed-token-8c1f0a77"
FEED_PASSWORD = "p@ss-w0rd-4417"


def test_credentials_in_configured_urls_are_secrets_and_never_shown() -> None:
    settings = load_settings(
        {
            "RSS_FEED_URLS": (
                f"https://news.example/rss?token={FEED_TOKEN}&lang=en,"
                "https://reader:p%40ss-w0rd-4417@private.example/feed"
            ),
            "COINGECKO_BASE_URL": "https://gecko-token-5512@proxy.example/api/v3",
            "DATABASE_URL": "postgresql://postgres@db.example/cryptoetl",  # a role, not a secret
        }
    )
    secrets = settings.secret_values()
    for credential in (FEED_TOKEN, FEED_PASSWORD, "p%40ss-w0rd-4417", "gecko-token-5512"):
        assert credential in secrets
    assert "postgres" not in secrets
    assert "reader" not in secrets  # a user name with a password is not the secret
    shown = settings.redactor()(repr(settings))  # what a log line of the settings shows
    for credential in (FEED_TOKEN, "w0rd", "gecko-token"):
        assert credential not in shown
    assert "https://news.example/rss?token=***&lang=en" in shown


def test_feeds_differing_only_in_credentials_are_an_error() -> None:
    with pytest.raises(ConfigError, match="RSS_FEED_URLS") as info:
        load_settings(
            {"RSS_FEED_URLS": "https://x.example/rss?token=aaaa1111,https://x.example/rss?token=b2"}
        )
    assert "aaaa1111" not in str(info.value)


def test_bad_feed_url_error_does_not_show_its_token() -> None:
    with pytest.raises(ConfigError, match="RSS_FEED_URLS") as info:
        load_settings({"RSS_FEED_URLS": f"ftp://host/feed?token={FEED_TOKEN}"})
    assert FEED_TOKEN not in str(info.value)


def test_the_database_wait_of_worker_once_defaults_to_30_s_and_can_be_set() -> None:
    assert load_settings({}).db_wait_s == 30.0
    assert load_settings({"DB_WAIT_S": "2.5"}).db_wait_s == 2.5


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptoetl", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_subcommands() -> None:
    result = _cli("--help", env={})
    assert result.returncode == 0
    for command in ("worker", "api", "stub-upstream", "migrate"):
        assert command in result.stdout


def test_invalid_database_url_is_one_line_and_exit_2() -> None:
    result = _cli("worker", "--once", env={"DATABASE_URL": "postgresql://u:pw@h:99999999/db"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr
    assert "pw@" not in result.stderr


def test_missing_database_url_exit_2() -> None:
    result = _cli("worker", "--once", env={})
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def test_the_api_reports_a_configuration_error_the_same_one_way() -> None:
    """Granian imports ``cryptoetl.api.app:app``; its settings fail like every command's."""
    result = subprocess.run(
        [sys.executable, "-c", "from cryptoetl.api.app import app"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "cryptoetl: configuration error: API_DATABASE_URL is required (the read-only role's URL)"
    ]
