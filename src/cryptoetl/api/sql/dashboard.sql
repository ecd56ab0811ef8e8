-- The dashboard's own statements (the runs, assets and status ones are shared). Each is a range
-- of ix_runs_source_started, bounded by a LIMIT, or reads the kept series counts.

-- last_success_start --
-- When the newest successful run of a source started ($1 the source).
SELECT started_at
FROM runs
WHERE source_type = $1::text AND status = 'success'
ORDER BY started_at DESC
LIMIT 1;

-- since_success --
-- Drift events, rejects and runs of a source since $2 (its last success; all when null), over at
-- most $3 runs ($1 the source).
SELECT coalesce(sum(drift_events), 0)::bigint, coalesce(sum(rejected), 0)::bigint, count(*)
FROM (
    SELECT drift_events, rejected FROM runs
    WHERE source_type = $1::text AND started_at >= coalesce($2::timestamptz, '-infinity')
    ORDER BY started_at DESC
    LIMIT $3::int
) r;

-- failure_reason --
-- The error of the failed run behind checkpoints.last_failure_at (a success clears last_error):
-- the scan starts at that instant, and the failed run is the first it meets ($1 the source,
-- $2 the failure's time).
SELECT error
FROM runs
WHERE source_type = $1::text AND status = 'failed' AND started_at <= $2::timestamptz
ORDER BY started_at DESC
LIMIT 1;

-- top_assets --
-- The $1 assets with the most market observations.
SELECT a.id, a.symbol, a.name, c.n
FROM (
    SELECT asset_id, sum(observations)::bigint AS n FROM market_series
    GROUP BY asset_id ORDER BY n DESC, asset_id LIMIT $1::int
) c
JOIN assets a ON a.id = c.asset_id
ORDER BY c.n DESC, a.id;
