from __future__ import annotations

import pytest

from tests.conftest import NewDatabase
from tests.support.bigtable import create_big_table

BIG_ROWS = 100_000


@pytest.fixture
async def big_source(new_pg_db: NewDatabase) -> str:
    """A source database with table `big` of BIG_ROWS rows."""
    dsn = await new_pg_db()
    await create_big_table(dsn, BIG_ROWS)
    return dsn
