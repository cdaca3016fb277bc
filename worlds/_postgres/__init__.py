"""The PostgreSQL world (``postgresql://``): many engines on many machines, one database.

Needs the ``postgres`` extra (asyncpg): ``pip install 'worldflow[postgres]'``.
"""

from worldflow.worlds._postgres.world import PostgresWorld

__all__ = ["PostgresWorld"]
