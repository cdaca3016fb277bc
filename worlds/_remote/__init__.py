"""The remote world: a world served over HTTP by ``worldflow serve`` (needs aiohttp).

``open_world("http://host:port", token=...)`` builds a :class:`RemoteWorld`; this package is
imported only then, so ``import worldflow`` never imports aiohttp.
"""

from worldflow.worlds._remote.world import TOKEN_ENV, RemoteWorld

__all__ = ["TOKEN_ENV", "RemoteWorld"]
