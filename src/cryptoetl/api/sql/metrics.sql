-- GET /metrics: pipeline figures from the bookkeeping tables, at scrape time, so that every API
-- process and replica reports the same. Bounded: a range of ix_runs_source_started per source.

-- runs_since --
-- Per source of $1 and run status: the runs started since $2 and the sums of their counts.
SELECT source_type, status, count(*) AS runs,
    coalesce(sum(processed), 0)::bigint AS processed, coalesce(sum(inserted), 0)::bigint AS inserted,
    coalesce(sum(updated), 0)::bigint AS updated, coalesce(sum(unchanged), 0)::bigint AS unchanged,
    coalesce(sum(rejected), 0)::bigint AS rejected,
    coalesce(sum(drift_events), 0)::bigint AS drift_events
FROM runs
WHERE source_type = ANY($1::text[]) AND started_at >= $2::timestamptz
GROUP BY source_type, status;
