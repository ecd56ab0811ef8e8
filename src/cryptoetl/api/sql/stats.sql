-- GET /stats: checkpoints and run totals.

-- checkpoints --
-- Every source's checkpoint, its cursor as JSON text.
SELECT source_type, status, cursor::text AS cursor, last_run_id, last_success_at,
    last_failure_at, last_error, records_total, last_run_processed, updated_at
FROM checkpoints
ORDER BY source_type;

-- totals --
-- Counts over every run: runs, failed runs, processed, inserted, updated, rejected, drift.
SELECT count(*), count(*) FILTER (WHERE status = 'failed'),
    coalesce(sum(processed), 0)::bigint, coalesce(sum(inserted), 0)::bigint,
    coalesce(sum(updated), 0)::bigint, coalesce(sum(rejected), 0)::bigint,
    coalesce(sum(drift_events), 0)::bigint
FROM runs;
