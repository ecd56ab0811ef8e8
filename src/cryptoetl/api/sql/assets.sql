-- Canonical assets (GET /assets, /assets/{id}, the dashboard's asset pages).

-- page --
-- One page of the assets matching $1 (a symbol, exact, any case) and $2 (a LIKE pattern matched
-- against name, slug and symbol), by id: $3 rows after $4. Always one row at least: every row
-- carries the total; past the end, that one row has only the total.
WITH matching AS (
    SELECT a.id, a.slug, a.symbol, a.name FROM assets a
    WHERE ($1::text IS NULL OR a.symbol = upper($1::text))
        AND ($2::text IS NULL OR a.name ILIKE $2::text ESCAPE '\' OR a.slug ILIKE $2::text ESCAPE '\'
             OR a.symbol ILIKE $2::text ESCAPE '\')
)
SELECT (SELECT count(*) FROM matching) AS total, p.id, p.slug, p.symbol, p.name, p.records
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT m.id, m.slug, m.symbol, m.name,
        coalesce((SELECT sum(s.observations) FROM market_series s WHERE s.asset_id = m.id), 0)::bigint
            AS records
    FROM matching m ORDER BY m.id LIMIT $3::int OFFSET $4::bigint
) p ON true
ORDER BY p.id;

-- find --
-- The asset $1 (an id) or $2 (a slug, else a symbol) names: the first kind that matches wins;
-- several rows: an ambiguous symbol (at most 6, to name them).
WITH found AS (
    SELECT id, slug, symbol, name, 1 AS rank FROM assets WHERE id = $1::bigint
    UNION ALL SELECT id, slug, symbol, name, 2 FROM assets WHERE slug = lower($2::text)
    UNION ALL SELECT id, slug, symbol, name, 3 FROM assets WHERE symbol = upper($2::text)
)
SELECT id, slug, symbol, name FROM found
WHERE rank = (SELECT min(rank) FROM found)
ORDER BY id
LIMIT 6;

-- mappings --
-- How each source's coin was mapped to asset $1.
SELECT source_type, source_id, symbol, name, match_method, confidence::float8
FROM asset_mappings
WHERE asset_id = $1::bigint
ORDER BY source_type, source_id;

-- latest_prices --
-- The newest observation of each series of asset $1 (at most $2): one probe of its (series,
-- timestamp) key each. The caller writes its source_id as /data does: the series key, '@', the
-- timestamp (cryptoetl.pipeline.documents.iso_utc).
SELECT s.source_type, s.key, s.id, s.venue, s.base, s.quote, s.interval,
    o.price, o.market_cap, o.volume_quote, o.change_pct, o.rank, o.source_timestamp
FROM market_series s
JOIN market_observations o ON o.source_type = s.source_type AND o.series_id = s.id
    AND o.source_timestamp = s.last_ts
WHERE s.asset_id = $1::bigint
ORDER BY s.source_type, s.venue, s.quote NULLS LAST, s.interval NULLS LAST, s.id
LIMIT $2::int;

-- news --
-- The $2 newest news items that mention asset $1 (the GIN index on mentioned_asset_ids).
SELECT id, source_type, source_id, title, url, author, category, source_timestamp
FROM news_items
WHERE mentioned_asset_ids @> ARRAY[$1::bigint]
ORDER BY source_timestamp DESC, id DESC
LIMIT $2::int;

-- observations_by_source --
-- Market observations of asset $1 per source, from the kept series counts.
SELECT source_type, sum(observations)::bigint
FROM market_series
WHERE asset_id = $1::bigint
GROUP BY source_type;
