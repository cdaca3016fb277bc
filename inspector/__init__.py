"""The worldflow HTTP app: the Dapr workflow API, webhooks, the inspector and the APIs.

::

    from worldflow.inspector import create_app
    app = create_app(engine, token="s3cret")     # an aiohttp.web.Application
    web.run_app(app, host="127.0.0.1", port=8642)  # or: worldflow serve

It needs the ``inspector`` extra (``pip install 'worldflow[inspector]'``); ``import worldflow``
never imports aiohttp.

How the app is put together (the convention every route family follows)
-----------------------------------------------------------------------

* **One module per family** with ``add_routes(app: web.Application) -> None``, listed in
  ``worldflow.inspector._app.FAMILIES``: ``api/dapr.py`` (Dapr workflow API),
  ``api/webhooks.py`` (webhooks, ``/api/hooks/resume``), ``api/world.py`` (the World API of
  the remote world), ``api/mastra.py`` (the Mastra workflows API), ``ui/`` (the inspector UI).
  A family adds routes to the app it is given and nothing else; it never creates its own
  application, so it can be served alone or mounted under a prefix with the rest.
* **Shared state lives under typed keys** (``_keys``): ``request.app[CONTROL]`` is the Engine
  or Client (:class:`~worldflow.inspector._keys.ControlPlane`), ``request.app[SETTINGS]`` the
  :class:`~worldflow.inspector._keys.Settings` (token, base URL, body limit, webhook
  timeout). A family needing more state defines its own ``web.AppKey`` in its module.
* **Every handler is declared with** :func:`~worldflow.inspector._routes.route`: ``public=True``
  skips auth (webhooks, ``/healthz``); ``token_headers=("dapr-api-token",)`` accepts the token
  in another header too; ``errors=ErrorShape(...)`` gives the family its own error body (Dapr's
  ``{"errorCode", "message"}``, Mastra's ``{"error"}``); ``body=``, ``query=``,
  ``responses=`` and ``errors_on=`` name the msgspec types and statuses, from which
  ``/openapi.json`` is generated. Undeclared handlers need the token and are left out of the
  document.
* **Read requests with** ``_body``: ``json_body(request, Type)``, ``query_params(request,
  Type)``, ``read_body(request)``; they enforce the body limit (413) and raise
  :class:`~worldflow.inspector._body.RequestError` (400 naming the field).
* **Raise, do not answer errors by hand**: the error middleware maps the ``worldflow.errors``
  tree (404 unknown run or hook, 409 conflict, 400 bad input, ...), ``RequestError`` and
  aiohttp's ``HTTPException`` to statuses in the route's shape; any other exception is a bug:
  a 500 whose body carries an id also logged with the traceback.
* **Auth**: with a token, every non-public route needs ``Authorization: Bearer <token>``
  (constant-time compare; 401 without, 403 wrong). A family that has another way in (the UI's
  session cookie) appends a check to ``app[AUTH_CHECKS]``.
"""

from __future__ import annotations

try:
    import aiohttp  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "worldflow.inspector needs aiohttp: pip install 'worldflow[inspector]'"
    ) from exc

from worldflow.inspector._app import FAMILIES, create_app
from worldflow.inspector._body import RequestError, json_body, query_params, read_body
from worldflow.inspector._keys import (
    AUTH_CHECKS,
    CONTROL,
    SETTINGS,
    ControlPlane,
    Settings,
)
from worldflow.inspector._routes import ErrorShape, Problem, RouteSpec, route

__all__ = [
    "AUTH_CHECKS",
    "CONTROL",
    "FAMILIES",
    "SETTINGS",
    "ControlPlane",
    "ErrorShape",
    "Problem",
    "RequestError",
    "RouteSpec",
    "Settings",
    "create_app",
    "json_body",
    "query_params",
    "read_body",
    "route",
]
