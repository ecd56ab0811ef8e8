"""Static SQL shared by several API resources (one statement, one place)."""

from __future__ import annotations

# Exact record counts per source and kind, from the counts the writers keep (no table scan).
RECORDS_BY_SOURCE = """SELECT source_type, 'market' AS kind, sum(observations)::bigint AS n
FROM market_series GROUP BY source_type
UNION ALL
SELECT source_type, 'news', n FROM news_counts WHERE asset_id = 0"""

# The newest source timestamp of any record: series keep their bounds, news has its index.
NEWEST_RECORD = """SELECT greatest(
    (SELECT max(last_ts) FROM market_series),
    (SELECT source_timestamp FROM news_items ORDER BY source_timestamp DESC, id DESC LIMIT 1))"""
