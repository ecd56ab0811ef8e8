"""``/docs``: Swagger UI served by the API itself, so it works with no internet.

Swagger UI's files come from the ``swagger-ui-py`` wheel (a maintained PyPI package that
vendors ``swagger-ui-dist``); our page and its initializer are two small files beside this
module. The page's Content-Security-Policy allows scripts, styles and connections to this
origin only (no inline script: the initializer is a file), images also as data: URLs (the
UI's icons).

Route descriptions are the resource modules' docstrings, written in reST for the code's readers;
:func:`openapi_text` turns them into CommonMark, the format OpenAPI descriptions are rendered in,
so the docs show ``code`` as code and no ``:class:`` roles.
"""

from __future__ import annotations

import inspect
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated

import swagger_ui  # type: ignore[import-untyped]
from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

# :role:`target` or :role:`~dotted.path.Name` (shown as its last part, as Sphinx does).
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")


def openapi_text(docstring: str | None) -> str:
    """A reST docstring as a CommonMark OpenAPI description (see module docstring)."""
    text = _ROLE.sub(
        lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`",
        inspect.cleandoc(docstring or ""),
    )
    return text.replace("``", "`")


_PAGE = resources.files("cryptoetl.api").joinpath("docs_page")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
# The UI's files, and nothing else of the wheel (its editor is not served).
_ASSETS = ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css")


@get("/docs", include_in_schema=False, sync_to_thread=False)
def docs_page() -> Response[bytes]:
    return Response(
        _PAGE.joinpath("index.html").read_bytes(), media_type="text/html", headers=_HEADERS
    )


@get("/docs/init.js", include_in_schema=False, sync_to_thread=False)
def docs_init() -> Response[bytes]:
    return Response(
        _PAGE.joinpath("init.js").read_bytes(),
        media_type="text/javascript",
        headers=_HEADERS,
    )


_MEDIA = {".js": "text/javascript", ".css": "text/css"}


@get("/docs/assets/{name:str}", include_in_schema=False, sync_to_thread=False)
def docs_asset(
    name: Annotated[str, Parameter(description="A file of Swagger UI")],
) -> Response[bytes]:
    if name not in _ASSETS:
        raise NotFoundException(f"no documentation asset {name[:60]!r}")
    return Response(_asset(name), media_type=_MEDIA[Path(name).suffix], headers=_HEADERS)


@cache
def _asset(name: str) -> bytes:
    return (Path(swagger_ui.__file__).parent / "static" / name).read_bytes()


ROUTES = [docs_page, docs_init, docs_asset]
