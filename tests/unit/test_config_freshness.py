"""FRESHNESS_S: per-source data-age thresholds, their defaults and their validation."""

from __future__ import annotations

import pytest

from cryptoetl.config import ConfigError, load_settings


def test_defaults_follow_each_source_interval() -> None:
    settings = load_settings({})
    assert settings.freshness_for("coingecko") == 900  # 3 x 300 s
    assert settings.freshness_for("coinpaprika") == 900
    assert settings.freshness_for("rss") == 21_600  # 3 x 600 s is below the 6 h floor
    assert settings.freshness_for("csv") is None  # history files: exempt
    faster = load_settings({"INTERVALS_S": "coingecko=60,rss=9000"})
    assert faster.freshness_for("coingecko") == 180
    assert faster.freshness_for("rss") == 27_000  # 3 x 9000 s: the larger wins


def test_overrides_and_exemptions() -> None:
    settings = load_settings({"FRESHNESS_S": "csv=86400,coingecko=0,rss=3600"})
    assert settings.freshness_for("csv") == 86_400
    assert settings.freshness_for("coingecko") is None  # 0: never stale
    assert settings.freshness_for("rss") == 3600
    assert settings.freshness_for("coinpaprika") == 900


@pytest.mark.parametrize("raw", ["twitter=60", "csv=soon", "csv"])
def test_malformed_values_name_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="FRESHNESS_S"):
        load_settings({"FRESHNESS_S": raw})
