-- Runs of the ETL (GET /runs, /compare-runs, the dashboard's timelines). Every statement is a
-- range of ix_runs_started or ix_runs_source_started, or a primary-key probe. Rows are whole
-- runs plus duration_s: cryptoetl.api.runs.run_item reads the columns it shows.

-- recent --
-- The newest runs of every source ($1 how many).
SELECT r.*, extract(epoch FROM r.finished_at - r.started_at)::float8 AS duration_s
FROM runs r
ORDER BY r.started_at DESC, r.id
LIMIT $1::int;

-- recent_of_source --
-- The newest runs of one source ($1 the source, $2 how many).
SELECT r.*, extract(epoch FROM r.finished_at - r.started_at)::float8 AS duration_s
FROM runs r
WHERE r.source_type = $1::text
ORDER BY r.started_at DESC, r.id
LIMIT $2::int;

-- latest_two_finished --
-- The newest two runs of a source that are no longer running ($1 the source).
SELECT r.*, extract(epoch FROM r.finished_at - r.started_at)::float8 AS duration_s
FROM runs r
WHERE r.source_type = $1::text AND r.status <> 'running'
ORDER BY r.started_at DESC, r.id
LIMIT 2;

-- by_id --
-- One run ($1 its id).
SELECT r.*, extract(epoch FROM r.finished_at - r.started_at)::float8 AS duration_s
FROM runs r
WHERE r.id = $1::uuid;

-- successes_before --
-- The history a run is judged against: the newest successful runs of its source that started
-- before it ($1 the source, $2 its start, $3 how many).
SELECT r.*, extract(epoch FROM r.finished_at - r.started_at)::float8 AS duration_s
FROM runs r
WHERE r.source_type = $1::text AND r.status = 'success' AND r.started_at < $2::timestamptz
ORDER BY r.started_at DESC, r.id
LIMIT $3::int;
