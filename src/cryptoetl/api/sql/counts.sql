-- Exact record counts, from the totals the writers keep in the same transaction as every write
-- (market_series.observations, news_counts): no table of observations is ever counted.

-- records_by_source --
-- Records per source and kind (market | news).
SELECT source_type, 'market' AS kind, sum(observations)::bigint AS n
FROM market_series
GROUP BY source_type
UNION ALL
SELECT source_type, 'news', n
FROM news_counts
WHERE asset_id = 0;
