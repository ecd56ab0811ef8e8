"""The Litestar application: ``create_app(settings)``, and ``app`` for Granian.

``granian --interface asgi cryptoetl.api.app:app`` imports this module and reads ``app``; the
attribute is built on first access from the environment (:func:`load_settings`), so importing
the module (tests, tooling) needs no configuration. Each Granian worker process builds its own
app and engine; request metrics are shared by the workers of one server
(:mod:`cryptoetl.api.request_metrics`).

Every route answers ``HEAD`` as its ``GET`` and a ``405`` says ``Allow``
(:mod:`cryptoetl.api.methods`); the dashboard's templates and stylesheet are served from the
:mod:`cryptoetl.api.dashboard` package.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.exceptions import MethodNotAllowedException
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.static_files import create_static_files_router

from cryptoetl.api import (
    assets,
    compare_runs,
    data,
    docs,
    health,
    metrics,
    prices,
    runs,
    stats,
)
from cryptoetl.api.cache import response_cache, totals_cache
from cryptoetl.api.dashboard import render
from cryptoetl.api.dashboard.routes import ROUTES as DASHBOARD_ROUTES
from cryptoetl.api.data.render import SeriesDocs
from cryptoetl.api.deps import Database, provide_db
from cryptoetl.api.errors import exception_handlers
from cryptoetl.api.listener import ChangeListener
from cryptoetl.api.methods import HeadAsGet, method_not_allowed
from cryptoetl.api.request_context import RequestContext
from cryptoetl.api.request_metrics import RequestMetrics, request_metrics, share_across_workers
from cryptoetl.api.responses import CachedAnswers, Caches
from cryptoetl.config import Settings, load_settings_or_exit
from cryptoetl.logs import configure_logging


def _provide_settings(state: State) -> Settings:
    settings = state.settings
    assert isinstance(settings, Settings)
    return settings


def _provide_registry(state: State) -> RequestMetrics:
    registry = state.registry
    assert isinstance(registry, RequestMetrics)
    return registry


def create_app(settings: Settings) -> Litestar:
    """Build the API for ``settings`` (reads ``API_DATABASE_URL``, falling back to
    ``DATABASE_URL``). Connections are opened lazily, on the first request that needs one."""
    db = Database(
        settings.require_api_database_url(),
        statement_timeout_ms=settings.api_statement_timeout_ms,
        lock_timeout_ms=settings.api_lock_timeout_ms,
    )
    registry = request_metrics()
    caches = Caches(
        responses=response_cache(),
        totals=totals_cache(),
        windows=totals_cache(),
        series_docs=SeriesDocs(),
    )
    listener = ChangeListener(
        settings.require_api_database_url(), [caches.responses, caches.totals, caches.windows]
    )

    async def close_db() -> None:
        await listener.stop()
        await db.dispose()

    app = Litestar(
        route_handlers=[
            data.list_data,
            health.health,
            health.live,
            stats.stats,
            runs.list_runs,
            compare_runs.compare_runs,
            assets.list_assets,
            assets.get_asset,
            prices.get_prices,
            metrics.metrics,
            *docs.ROUTES,
            *DASHBOARD_ROUTES,
            create_static_files_router(
                render.STATIC_PATH,
                [render.STATIC_DIR],
                # Revalidated on every load (cheap, with the ETag): a new release's styles
                # show at once.
                cache_control=CacheControlHeader(no_cache=True),
            ),
        ],
        template_config=render.template_config(),
        state=State({"db": db, "settings": settings, "registry": registry, "caches": caches}),
        dependencies={
            # use_cache: each is one object for the app's lifetime, resolved once.
            "db": Provide(provide_db, sync_to_thread=False, use_cache=True),
            "settings": Provide(_provide_settings, sync_to_thread=False, use_cache=True),
            "registry": Provide(_provide_registry, sync_to_thread=False, use_cache=True),
        },
        exception_handlers={
            **exception_handlers(),
            MethodNotAllowedException: method_not_allowed,
        },
        on_startup=[listener.start],
        on_shutdown=[close_db],
        openapi_config=OpenAPIConfig(
            title="cryptoetl API",
            version="1.0.0",
            description="Read-only access to normalized crypto market data and news.",
            path="/schema",
            # The schema as JSON only; the interactive docs are /docs (served offline, without
            # the CDN Litestar's UI plugins load from: see api/docs.py).
            render_plugins=[JsonRenderPlugin(path="/openapi.json")],
        ),
        # Our JSON logging is configured by the process (see app_from_env); Litestar's own
        # logging setup would add a second, differently formatted handler.
        logging_config=None,
        debug=False,
    )
    # Wrap the whole pipeline, routing included, so even a 404 gets an id, a log line and a
    # metric (Litestar's middleware list only runs for matched routes).
    # Cached answers are sent before routing, inside the request context (ids, logs, metrics)
    # and the HEAD adapter (a HEAD is answered as its GET, without the body).
    answers = CachedAnswers(app.asgi_handler, caches.responses)
    app.asgi_handler = RequestContext(HeadAsGet(answers), registry)
    return app


def app_from_env() -> Litestar:
    """The production app: settings and JSON logging from the environment."""
    settings = load_settings_or_exit(Settings.require_api_database_url)
    configure_logging(settings)
    share_across_workers()
    return create_app(settings)


_app: Litestar | None = None


def __getattr__(name: str) -> Any:
    """``app`` is built from the environment on first access (PEP 562), once per process."""
    global _app
    if name == "app":
        if _app is None:
            _app = app_from_env()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
