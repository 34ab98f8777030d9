"""PostgreSQL source and sink on asyncpg: key-range reads by COPY, writes by binary COPY."""
