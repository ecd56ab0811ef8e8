# cryptoetl — `just --list` shows every recipe. Run with `uv run just <recipe>` if just is not on PATH.

set dotenv-load := false

compose := "docker compose"
# Shell variables beat .env in compose: the offline demo points the worker at the stub.
offline_env := "COINPAPRIKA_BASE_URL=http://stub:8900 COINGECKO_BASE_URL=http://stub:8900/api/v3 RSS_FEED_URLS=http://stub:8900/rss"

# List the recipes
default:
    @just --list

# Start PostgreSQL, migrations, worker and API in containers (`just up offline`: stub upstreams)
up *profile:
    {{ if profile == "offline" { offline_env + " " + compose + " --profile offline" } else { compose } }} up -d --build
    @echo "API: http://localhost:8000/docs — logs: docker compose logs -f worker"

# Stop the containers (data volume kept)
down:
    {{ compose }} --profile offline down

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

# Run everything on this machine without Docker: embedded PostgreSQL, stub upstream, worker, API
dev:
    uv run python -m cryptoetl.dev

# Open psql on the database (DATABASE_URL)
db-shell:
    psql "${DATABASE_URL:?set DATABASE_URL}"

# Remove containers, volumes and local dev data
clean:
    -{{ compose }} --profile offline down -v
    rm -rf .dev-data .pytest_cache .mypy_cache .ruff_cache
