"""The throwaway PostgreSQL cluster (tests/support/postgres.py) runs and takes prepared xacts."""

from __future__ import annotations

from support.postgres import PostgresCluster


def test_cluster_answers_and_allows_prepared_transactions(
    postgres_cluster: PostgresCluster,
) -> None:
    dsn = postgres_cluster.create_database("fixture_check")
    assert dsn.endswith("/fixture_check")
    assert postgres_cluster.psql("SHOW max_prepared_transactions").strip() == "100"
    assert postgres_cluster.psql("SELECT 1+1", "fixture_check").strip() == "2"
