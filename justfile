# cryptoetl — `just --list` shows every recipe. Run with `uv run just <recipe>` if just is not on PATH.

set dotenv-load := false

compose := "docker compose"
# Shell variables beat .env in compose: the offline demo points the worker at the stub.
offline_env := "COINPAPRIKA_BASE_URL=http://stub:8900 COINGECKO_BASE_URL=http://stub:8900/api/v3 RSS_FEED_URLS=http://stub:8900/rss"
# One file per `just dev` run (two runs side by side do not read each other's status).
dev_status := ".dev-data/exit-status-" + uuid()

# List the recipes
default:
    @just --list

# Start PostgreSQL, migrations, worker and API in containers (`just up offline`: stub upstreams)
up *mode:
    {{ if mode == "offline" { offline_env + " " + compose + " up -d --build --scale stub=1" } else { compose + " up -d --build" } }}
    @echo "API: http://127.0.0.1:8000/ (dashboard), /docs — logs: docker compose logs -f worker"

# Stop the containers, the stub included (data volume kept)
down:
    {{ compose }} down

# Follow the logs of a service (default: worker)
logs service="worker":
    {{ compose }} logs -f {{ service }}

# One manual pass of every source (in the running worker container)
etl *args:
    {{ compose }} exec worker cryptoetl worker --once {{ args }}

# Apply database migrations (alembic upgrade head) against DATABASE_URL
migrate:
    uv run alembic upgrade head

# Run the test suite (the README's test command; also what CI runs)
test *args:
    uv run pytest {{ args }}

# Run the benchmarks (API and ingest, with dlt for comparison) and print their tables
bench *args:
    uv run --group bench python bench/run_all.py {{ args }}

# `just` answers a SIGTERM by forwarding it to the running line and then failing with "recipe
# was terminated", unless that line is infallible (`-`). So the line is infallible and `exec`s
# (the signal reaches `cryptoetl dev` itself, which stops every child and exits 0), and the
# command's own exit status comes back through a file, reported by the last line.
[doc("Everything on this machine without Docker: embedded PostgreSQL, stub, worker, API (`just dev --port 8001`)")]
[positional-arguments]
dev *args:
    @mkdir -p .dev-data && rm -f "{{ dev_status }}"
    -exec uv run cryptoetl dev --exit-status-file "{{ dev_status }}" "$@"
    @status="$(cat "{{ dev_status }}" 2>/dev/null || echo 1)"; rm -f "{{ dev_status }}"; exit "$status"

# Open psql on the database (DATABASE_URL)
db-shell:
    psql "${DATABASE_URL:?set DATABASE_URL}"

# Remove containers, volumes and local dev data (the containers only where a Docker engine answers)
clean:
    @if docker info >/dev/null 2>&1 && {{ compose }} version >/dev/null 2>&1; then {{ compose }} down -v; else echo "clean: no Docker engine answers here: containers and volumes skipped"; fi
    rm -rf .dev-data .pytest_cache .mypy_cache .ruff_cache
