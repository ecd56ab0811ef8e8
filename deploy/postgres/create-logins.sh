#!/usr/bin/env bash
# Create (or update) cryptoetl's login users and put them in the group roles.
#
# The migrations create the group roles and their grants (writer: read/write on every table;
# reader: SELECT only, default privileges included). This script creates the *login* users that
# join them, so it is safe to run before or after `alembic upgrade head`, and again at any time.
#
# Environment (passwords are read by psql itself with \getenv, never put on a command line):
#   CRYPTOETL_WRITER_USER / CRYPTOETL_WRITER_PASSWORD   login used by the worker
#   CRYPTOETL_READER_USER / CRYPTOETL_READER_PASSWORD   login used by the API (read-only)
#   DB_WRITER_ROLE / DB_READER_ROLE                     group roles (default cryptoetl_writer/_reader)
#   CRYPTOETL_DB                                        database to grant CONNECT on (default: POSTGRES_DB)
#   ADMIN_DATABASE_URL                                  optional: a superuser URL; otherwise psql's
#                                                       usual PG* variables / local socket are used
# In the postgres image, put it in /docker-entrypoint-initdb.d/ (compose.yaml does).
set -euo pipefail

: "${CRYPTOETL_WRITER_USER:?set CRYPTOETL_WRITER_USER}"
: "${CRYPTOETL_WRITER_PASSWORD:?set CRYPTOETL_WRITER_PASSWORD}"
: "${CRYPTOETL_READER_USER:?set CRYPTOETL_READER_USER}"
: "${CRYPTOETL_READER_PASSWORD:?set CRYPTOETL_READER_PASSWORD}"
export DB_WRITER_ROLE="${DB_WRITER_ROLE:-cryptoetl_writer}"
export DB_READER_ROLE="${DB_READER_ROLE:-cryptoetl_reader}"
export CRYPTOETL_DB="${CRYPTOETL_DB:-${POSTGRES_DB:-cryptoetl}}"

connection=()
if [[ -n "${ADMIN_DATABASE_URL:-}" ]]; then
  connection=("$ADMIN_DATABASE_URL")
elif [[ -n "${POSTGRES_USER:-}" ]]; then
  connection=(--username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}")
fi

psql "${connection[@]}" --no-psqlrc --quiet -v ON_ERROR_STOP=1 <<'SQL'
\getenv writer_role DB_WRITER_ROLE
\getenv reader_role DB_READER_ROLE
\getenv writer_user CRYPTOETL_WRITER_USER
\getenv writer_password CRYPTOETL_WRITER_PASSWORD
\getenv reader_user CRYPTOETL_READER_USER
\getenv reader_password CRYPTOETL_READER_PASSWORD
\getenv database CRYPTOETL_DB

SELECT format('CREATE ROLE %I NOLOGIN', r) FROM unnest(ARRAY[:'writer_role', :'reader_role']) AS r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec

SELECT format('CREATE ROLE %I LOGIN', u) FROM unnest(ARRAY[:'writer_user', :'reader_user']) AS u
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = u) \gexec

SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'writer_user', :'writer_password') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'reader_user', :'reader_password') \gexec
SELECT format('GRANT %I TO %I', :'writer_role', :'writer_user') \gexec
SELECT format('GRANT %I TO %I', :'reader_role', :'reader_user') \gexec
-- Belt and braces: every session of the reader login starts read-only.
SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', :'reader_user') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I', :'database', :'writer_role', :'reader_role')
 WHERE EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
SQL
echo "create-logins: ${CRYPTOETL_WRITER_USER} -> ${DB_WRITER_ROLE}, ${CRYPTOETL_READER_USER} -> ${DB_READER_ROLE}"
