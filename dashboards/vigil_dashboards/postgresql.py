"""PostgreSQL: is the database the problem? Availability, connections, the longest transaction,
throughput, locks, vacuum, checkpoints, replication (role, lag, standbys) and its log lines."""
from . import navigation as nav
from .board import assemble, query_variable
from .panels import (
    BLUE,
    GREEN,
    ORANGE,
    RATE,
    RED,
    markdown,
    promql,
    row,
    stat,
    table,
    timeseries,
    value_text,
)

UID = nav.UIDS["postgresql"]
PG = 'job="postgres", instance=~"$instance"'
DB = f'{PG}, datname=~"$datname"'
# Transactions that hold snapshots and locks: idle and disabled backends have none.
IN_TRANSACTION = 'state=~"active|idle in transaction.*|fastpath function call"'
PG_LOGS = '{service="postgresql", host=~"' + nav.HOSTS + '"}'
PG_PROBLEMS = ('{service="postgresql", host=~"' + nav.HOSTS
               + '", level=~"warning|error|fatal|panic"}')


def _rate(metric, selector, by="datname"):
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{RATE}]))"


def _cache_hit(by):
    hit, read = (_rate(f"pg_stat_database_blks_{k}", DB, by) for k in ("hit", "read"))
    return f"{hit} / ({hit} + {read})"


def _problem_row():
    api_latency = ('histogram_quantile(0.95, sum by (le) (rate('
                   f'vigil_db_query_duration_seconds_bucket{{job="vigil-api"}}[{RATE}])))')
    return row(
        "Is the database the problem? (now)",
        stat("PostgreSQL up", "Whether postgres_exporter can connect to every selected "
             "PostgreSQL; PostgresDown pages when not.", promql(f"min(pg_up{{{PG}}})"),
             steps=((RED, None), (GREEN, 1)),
             mappings=(value_text(1, "UP", GREEN), value_text(0, "DOWN", RED)),
             links=(nav.runbook_link("postgres.md", "postgresdown", "Runbook: down"),), width=3),
        stat("API query p95", "95th percentile of SQL statement duration as the API sees it "
             "(pool wait and network included): the database as its client feels it.",
             promql(api_latency), unit="s", steps=((GREEN, None), (ORANGE, 0.05), (RED, 0.2)),
             links=(nav.dashboard_link("api"),), width=3),
        stat("Connections used", "Backends as a share of max_connections; "
             "PostgresTooManyConnections fires over 80 %.",
             promql(f"max(sum by (instance) (pg_stat_activity_count{{{PG}}}) / on (instance) "
                    f"max by (instance) (pg_settings_max_connections{{{PG}}}))"),
             unit="percentunit", steps=((GREEN, None), (ORANGE, 0.7), (RED, 0.8)),
             links=(nav.runbook_link("postgres.md", "postgrestoomanyconnections",
                                     "Runbook: connections"),), width=3),
        stat("Longest transaction", "Age of the oldest open transaction (active or idle in "
             "transaction). Long ones hold locks and stop vacuum from removing dead rows.",
             promql(f"max(pg_stat_activity_max_tx_duration{{{PG}, {IN_TRANSACTION}}})"),
             unit="s", steps=((GREEN, None), (ORANGE, 60), (RED, 300)), width=3),
        stat("Cache hit ratio", "Share of block reads served from shared buffers over the "
             "selected databases; below 99 % the working set no longer fits in memory.",
             promql(f"sum({_rate('pg_stat_database_blks_hit', DB, 'instance')}) / "
                    f"(sum({_rate('pg_stat_database_blks_hit', DB, 'instance')}) + "
                    f"sum({_rate('pg_stat_database_blks_read', DB, 'instance')}))"),
             unit="percentunit", steps=((RED, None), (ORANGE, 0.95), (GREEN, 0.99)), width=3),
        stat("Deadlocks (1 h)", "Deadlocks PostgreSQL detected and broke (one transaction "
             "rolled back) in the last hour.",
             promql(f"sum(increase(pg_stat_database_deadlocks{{{DB}}}[1h]))"),
             steps=((GREEN, None), (RED, 1)), width=3),
        stat("Role", "Primary or hot standby, per the server itself (pg_is_in_recovery).",
             promql(f"max(pg_replication_is_replica{{{PG}}})"), steps=((BLUE, None),),
             mappings=(value_text(0, "PRIMARY", BLUE), value_text(1, "STANDBY", ORANGE)),
             width=3),
        stat("Replication lag", "How far the most lagging standby's replay is behind, in "
             "time (0 on a primary).", promql(f"max(pg_replication_lag_seconds{{{PG}}})"),
             unit="s", steps=((GREEN, None), (ORANGE, 30), (RED, 300)), width=3),
    )


def _connections_row():
    return row(
        "Connections",
        timeseries("Backends by state", "Backends per database and state: active, idle, idle "
                   "in transaction (holding a snapshot, often a bug in the client).",
                   promql(f'sum by (datname, state) (pg_stat_activity_count{{{DB}}}) > 0',
                          "{{datname}} {{state}}"), unit="short", stack=True),
        timeseries("Backends against the limit", "All backends per instance, and "
                   "max_connections.",
                   promql(f"sum by (instance) (pg_stat_activity_count{{{PG}}})",
                          "{{instance}} backends"),
                   promql(f"max by (instance) (pg_settings_max_connections{{{PG}}})",
                          "{{instance}} max_connections"), unit="short"),
    )


def _throughput_row():
    return row(
        "Throughput",
        timeseries("Transactions", "Commits and rollbacks per second by database; rollbacks "
                   "rising with commits flat is a client failing.",
                   promql(_rate("pg_stat_database_xact_commit", DB), "{{datname}} commit"),
                   promql(_rate("pg_stat_database_xact_rollback", DB), "{{datname}} rollback"),
                   unit="ops", width=8),
        timeseries("Rows", "Rows fetched, inserted, updated and deleted per second over the "
                   "selected databases.",
                   *[promql(f"sum(rate(pg_stat_database_tup_{k}{{{DB}}}[{RATE}]))", k)
                     for k in ("fetched", "inserted", "updated", "deleted")],
                   unit="ops", width=8),
        timeseries("Cache hit ratio", "Share of block reads served from shared buffers; the "
                   "dashed line is 99 %.", promql(_cache_hit("datname"), "{{datname}}"),
                   unit="percentunit", steps=((ORANGE, 0.99),), width=8),
    )


def _locks_row():
    return row(
        "Long transactions and locks",
        timeseries("Longest transaction by state", "Age of the oldest transaction per "
                   "database and state; the dashed line is 5 minutes.",
                   promql(f"max by (datname, state) (pg_stat_activity_max_tx_duration"
                          f"{{{DB}, {IN_TRANSACTION}}})", "{{datname}} {{state}}"),
                   unit="s", steps=((RED, 300),), width=8),
        timeseries("Locks by mode", "Locks held per mode over the selected databases; a "
                   "climbing exclusive count means writers wait on each other.",
                   promql(f"sum by (mode) (pg_locks_count{{{DB}}})", "{{mode}}"),
                   unit="short", width=8),
        timeseries("Deadlocks and conflicts", "Deadlocks broken and queries cancelled by "
                   "recovery conflicts (on a standby), per second.",
                   promql(_rate("pg_stat_database_deadlocks", DB), "{{datname}} deadlocks"),
                   promql(_rate("pg_stat_database_conflicts", DB), "{{datname}} conflicts"),
                   unit="ops", width=8),
    )


def _vacuum_row():
    tables = f'{PG}, datname=~"$datname"'
    return row(
        "Vacuum",
        timeseries("Dead rows by table", "Rows deleted or updated away but not yet vacuumed, "
                   "per table of the API's database. Growing without bound means vacuum cannot "
                   "keep up or a long transaction holds them.",
                   promql(f"max by (relname) (pg_stat_user_tables_n_dead_tup{{{tables}}})",
                          "{{relname}}"), unit="short", width=8),
        timeseries("Vacuum and analyze runs", "Manual and automatic vacuum and analyze runs "
                   "per hour over the API's tables.",
                   *[promql(f"sum(increase(pg_stat_user_tables_{k}_count{{{tables}}}[1h]))", k)
                     for k in ("autovacuum", "vacuum", "autoanalyze", "analyze")],
                   unit="short", width=8),
        timeseries("Transaction ID age", "Age, in transactions, of the oldest unfrozen "
                   "transaction ID per database. Autovacuum freezes at 200 million "
                   "(autovacuum_freeze_max_age); at 2 billion PostgreSQL stops writes.",
                   promql(f"max by (datname) (pg_database_wraparound_age_datfrozenxid_seconds"
                          f"{{{DB}}})", "{{datname}}"), unit="short",
                   steps=((ORANGE, 200_000_000),), width=8),
        table("Last vacuum per table", "When autovacuum (or a manual VACUUM) last finished on "
              "each table of the API's database; never is normal for small, quiet tables.",
              promql(f"max by (relname) (pg_stat_user_tables_last_autovacuum{{{tables}}}) "
                     "* 1000", instant=True, table=True), width=24, height=6),
    )


def _checkpoints_row():
    return row(
        "Checkpoints and WAL",
        timeseries("Checkpoints per hour", "Checkpoints run on schedule (timed) and forced "
                   "early by WAL volume (requested). Requested ones mean max_wal_size is too "
                   "small for the write load.",
                   promql(f"sum(increase(pg_stat_checkpointer_num_timed_total{{{PG}}}[1h]))",
                          "timed"),
                   promql(f"sum(increase(pg_stat_checkpointer_num_requested_total{{{PG}}}[1h]))",
                          "requested"), unit="short", width=8),
        timeseries("Checkpoint I/O time", "Share of time the checkpointer spent writing and "
                   "syncing files (pg_stat_checkpointer, milliseconds per second / 1000).",
                   promql(f"sum(rate(pg_stat_checkpointer_write_time_total{{{PG}}}[{RATE}])) "
                          "/ 1000", "write"),
                   promql(f"sum(rate(pg_stat_checkpointer_sync_time_total{{{PG}}}[{RATE}])) "
                          "/ 1000", "sync"), unit="percentunit", width=8),
        timeseries("Buffers written", "Shared buffers written per second by the checkpointer "
                   "and by the background writer.",
                   promql(f"sum(rate(pg_stat_checkpointer_buffers_written_total{{{PG}}}"
                          f"[{RATE}]))", "checkpointer"),
                   promql(f"sum(rate(pg_stat_bgwriter_buffers_clean_total{{{PG}}}[{RATE}]))",
                          "background writer"), unit="ops", width=8),
        timeseries("WAL on disk", "Size of pg_wal. It grows when checkpoints lag, archiving "
                   "fails or a replication slot holds WAL for a standby that is gone.",
                   promql(f"max by (instance) (pg_wal_size_bytes{{{PG}}})", "{{instance}}"),
                   unit="bytes", width=12),
        timeseries("Database size", "On-disk size of each database.",
                   promql(f"max by (datname) (pg_database_size_bytes{{{DB}}})", "{{datname}}"),
                   unit="bytes", width=12),
    )


def _replication_row():
    return row(
        "Replication",
        timeseries("Role", "1 while a server is a hot standby, 0 while it is the primary; a "
                   "change is a promotion or a failover.",
                   promql(f"max by (instance) (pg_replication_is_replica{{{PG}}})",
                          "{{instance}}"), unit="short", width=8),
        timeseries("Replay lag (standbys)", "How long ago the last replayed transaction "
                   "committed on the primary, per standby (0 on a primary); the dashed line is "
                   "the 5-minute mark.",
                   promql(f"max by (instance) (pg_replication_lag_seconds{{{PG}}})",
                          "{{instance}}"), unit="s", steps=((RED, 300),), width=8),
        timeseries("WAL not yet replayed, per standby", "Bytes of WAL each connected standby "
                   "still has to replay, seen from the primary (pg_stat_replication), labelled "
                   "with the standby's state. Empty on a single server: there is no standby.",
                   promql(f"max by (application_name, client_addr, state) "
                          f"(pg_stat_replication_pg_wal_lsn_diff{{{PG}}})",
                          "{{application_name}} {{client_addr}} {{state}}"),
                   unit="bytes", width=8),
    )


def _logs_row():
    return row(
        "Where to look next",
        markdown("Logs, runbooks, related dashboards", "PostgreSQL's own log lines for this "
                 "time range (from /var/log/postgresql through Alloy), runbooks, and the "
                 "dashboards of its clients and host.",
                 nav.next_steps(logs=[("PostgreSQL warnings and errors", PG_PROBLEMS),
                                      ("All PostgreSQL log lines", PG_LOGS)],
                                runbooks=[("PostgreSQL alerts", "postgres.md")],
                                related=("api", "host")), width=24, height=4),
    )


def build():
    variables = [
        query_variable("instance", 'label_values(pg_up{job="postgres"}, instance)'),
        query_variable("datname", 'label_values(pg_stat_database_xact_commit{job="postgres", '
                       'instance=~"$instance", datname!~"template.*|"}, datname)',
                       label="database"),
    ]
    return assemble(
        UID, "Vigil PostgreSQL", "Is the database the problem? Connections, the longest "
        "transaction, throughput, locks, vacuum, checkpoints and replication.",
        [_problem_row(), _connections_row(), _throughput_row(), _locks_row(), _vacuum_row(),
         _checkpoints_row(), _replication_row(), _logs_row()],
        variables=variables,
        links=nav.top_links(logs=("PostgreSQL warnings and errors", PG_PROBLEMS),
                            runbook="postgres.md", related=("api", "host")),
    )
