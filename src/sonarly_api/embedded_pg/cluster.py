"""The embedded server's data directory: made once by initdb, without a locale (identifiers and
text compare byte by byte), and never left half-made."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from sonarly_api.embedded_pg.process import (
    EmbeddedPostgresError,
    RunAs,
    chown_tree,
    run_program,
)

logger = logging.getLogger("sonarly_api.embedded_pg")

SUPERUSER = "postgres"
_INITDB_TIMEOUT = 180.0


def ensure_cluster(base_dir: Path, cluster_dir: Path, bin_dir: Path, run_as: RunAs | None) -> None:
    """The data directory `cluster_dir`, made by initdb when it is not one yet (owned by
    `run_as` when the server runs as another user)."""
    if (cluster_dir / "PG_VERSION").is_file():
        if run_as is not None:
            chown_tree(cluster_dir, run_as)
        return
    if cluster_dir.exists():
        if any(cluster_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{cluster_dir} exists but is not a PostgreSQL data directory; "
                "move it away or choose another data dir"
            )
        cluster_dir.rmdir()
    # initdb into a scratch dir then rename: a crash mid-initdb never leaves a
    # half-initialised cluster that would later look valid.
    scratch = base_dir / "cluster.initdb"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    if run_as is not None:
        os.chown(scratch, run_as.uid, run_as.gid)
    logger.info("initialising embedded PostgreSQL cluster in %s", cluster_dir)
    result = run_program(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(scratch),
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "-U",
            SUPERUSER,
            "--no-instructions",
        ],
        timeout=_INITDB_TIMEOUT,
        run_as=run_as,
        cwd=scratch,
    )
    if result.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise EmbeddedPostgresError(
            f"initdb failed (exit {result.returncode}):\n{result.stderr.strip()}"
        )
    scratch.rename(cluster_dir)
