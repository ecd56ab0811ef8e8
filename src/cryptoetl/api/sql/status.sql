-- What a source's status is judged on (cryptoetl.api.status): the same facts for /health, the
-- dashboard and /metrics. A fixed number of index probes per source, whatever the table sizes.

-- source_facts --
-- Per source of $1: its checkpoint, its newest run, its newest finished run, and the upstream
-- timestamp of its newest observation not later than $2 (later ones are clock skew or a hostile
-- upstream, and must not make old data look fresh). Market sources read the bounds their series
-- keep (one row per series, read once for all sources, never the observations); news reads the
-- newest item on its index.
WITH market AS (
    SELECT m.source_type, max(m.last_ts) AS newest FROM market_series m
    WHERE m.last_ts <= $2::timestamptz
    GROUP BY m.source_type
)
SELECT s.source_type,
    c.status AS checkpoint_status, c.last_success_at, c.last_failure_at, c.last_error,
    latest.id AS latest_id, latest.status AS latest_status,
    latest.started_at AS latest_started_at, latest.finished_at AS latest_finished_at,
    finished.status AS finished_status, finished.started_at AS finished_started_at,
    finished.finished_at AS finished_finished_at,
    coalesce(market.newest, news.newest) AS newest_data_at
FROM unnest($1::text[]) AS s(source_type)
LEFT JOIN checkpoints c ON c.source_type = s.source_type
LEFT JOIN LATERAL (
    SELECT r.id, r.status, r.started_at, r.finished_at FROM runs r
    WHERE r.source_type = s.source_type ORDER BY r.started_at DESC LIMIT 1
) latest ON true
LEFT JOIN LATERAL (
    SELECT r.status, r.started_at, r.finished_at FROM runs r
    WHERE r.source_type = s.source_type AND r.status <> 'running'
    ORDER BY r.started_at DESC LIMIT 1
) finished ON true
LEFT JOIN market ON market.source_type = s.source_type
LEFT JOIN LATERAL (
    SELECT n.source_timestamp AS newest FROM news_items n
    WHERE s.source_type = 'rss' AND n.source_timestamp <= $2::timestamptz
    ORDER BY n.source_timestamp DESC, n.id DESC LIMIT 1
) news ON true
ORDER BY array_position($1::text[], s.source_type);

-- newest_run --
-- The newest run of any source.
SELECT id, source_type, status, started_at, finished_at
FROM runs
ORDER BY started_at DESC
LIMIT 1;
