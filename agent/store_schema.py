"""The store's schema as an ordered list of migrations.

Version N of the schema is the result of applying `MIGRATIONS[0:N]` in order. The store
records each applied step in `schema_version` and, when it opens a file, applies the
pending ones, each in its own transaction together with its `schema_version` row, so a
crash mid-upgrade leaves the file at the previous version, never half-migrated.

Adding a table is one new `Migration(...)` line at the end of `MIGRATIONS` (with its SQL
in a constant above it). Never edit or reorder a migration that has shipped: files
written by earlier versions have already applied it.

Notes for whoever adds the next step:

- Every column the ingest appender fills is listed in `agent.store._RESULT_INSERT_COLUMNS`;
  a column added to `results` needs a default or an entry there.
- Sequences are fine: DuckDB 2.0's `COPY FROM DATABASE` (used by `Store.compact`) keeps
  their counters, so compaction never hands out an id twice.
- Prefer no indexes on append-heavy tables: DuckDB's zonemaps already prune on columns
  that grow with time (`id`, `ts`), while an ART index slows every append and must fit
  in memory.
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    """One schema step: a short name for logs and the SQL (several statements allowed)."""

    name: str
    sql: str


# Bootstrap, run before the migrations: the table that says which of them have run.
SCHEMA_VERSION_SQL = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    applied_at TIMESTAMP NOT NULL  -- UTC
);
"""

# Why a sequence default for `id` rather than no id or ids counted by the writer: the
# 2.0 appender accepts a column subset and fills the omitted `id` from its default at the
# same speed as an explicit value (measured: 200k rows in ~70 ms either way), the
# database guarantees uniqueness across restarts and retention (a writer-side counter
# would need max(id) at start and could reuse pruned ids), and compaction keeps the
# counter. Other tables (incidents, ...) can point at a result by this id.
#
# `failed` and `evidence` are NULL rather than empty when a result has none: appending
# an empty list or JSON value costs ~2 us a row each, and most results have neither.
#
# Times are naive TIMESTAMP holding UTC: fetching TIMESTAMPTZ from Python needs pytz,
# which we do not install. The store converts to and from aware UTC datetimes.
_RESULTS_AND_META = """
CREATE SEQUENCE results_id_seq START 1;

CREATE TABLE results (
    id BIGINT NOT NULL DEFAULT nextval('results_id_seq'),
    ts TIMESTAMP NOT NULL,              -- ProbeResult.started_at, UTC
    probe VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    status VARCHAR NOT NULL CHECK (status IN ('ok', 'fail', 'error')),
    duration_ms DOUBLE NOT NULL,
    latency_ms DOUBLE,
    "values" JSON NOT NULL,             -- nested named scalars, {} when none
    detail VARCHAR NOT NULL,
    error VARCHAR,
    failed VARCHAR[],                   -- the expectations that failed; NULL when none
    evidence JSON,                      -- list of row objects; NULL when none
    scheduled_ts TIMESTAMP,             -- ProbeResult.scheduled_at, UTC
    lag_ms DOUBLE                       -- ts - scheduled_ts, kept for cheap SQL
);

CREATE TABLE meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL       -- UTC
);
"""

# The schema, in order. Append a line to add a migration; never edit a shipped one.
# The dispatcher's counters per probe since the agent started (`since`), saved every few
# seconds and at shutdown so `opsagent status` can show missed and overlapping runs.
_PROBE_COUNTERS = """
CREATE TABLE probe_counters (
    probe VARCHAR PRIMARY KEY,
    runs BIGINT NOT NULL,
    missed BIGINT NOT NULL,
    "overlaps" BIGINT NOT NULL,         -- quoted: OVERLAPS is an SQL keyword
    since TIMESTAMP NOT NULL,           -- UTC start of the agent process that counted
    updated_at TIMESTAMP NOT NULL       -- UTC
);
"""

# Incidents and their audit trail, silences, and the notification outbox. No primary
# keys on rows that are updated: DuckDB checks unique indexes eagerly, so updating a
# row twice in one transaction can raise a false duplicate-key error; the store module
# replaces rows by id (DELETE + INSERT) inside a transaction instead.
_INCIDENTS = """
CREATE TABLE incidents (
    id BIGINT NOT NULL,
    fingerprint VARCHAR NOT NULL,
    probe VARCHAR NOT NULL,
    entity VARCHAR,
    severity VARCHAR NOT NULL,
    state VARCHAR NOT NULL,             -- pending | open | acknowledged | resolved
    title VARCHAR NOT NULL,
    summary VARCHAR NOT NULL,
    pending_since TIMESTAMP NOT NULL,   -- UTC, like every time below
    opened_at TIMESTAMP,
    acknowledged_by VARCHAR,
    acknowledged_at TIMESTAMP,
    ack_comment VARCHAR,
    ack_expires_at TIMESTAMP,
    resolved_at TIMESTAMP,
    resolution VARCHAR,
    flapping BOOLEAN NOT NULL,
    maintenance BOOLEAN NOT NULL,
    notified BOOLEAN NOT NULL,
    last_notified_at TIMESTAMP,
    reminders_sent INTEGER NOT NULL,
    escalated_at TIMESTAMP,
    labels JSON NOT NULL,
    "values" JSON NOT NULL,
    evidence JSON NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE SEQUENCE incident_events_id_seq START 1;
CREATE TABLE incident_events (
    id BIGINT NOT NULL DEFAULT nextval('incident_events_id_seq'),
    incident_id BIGINT NOT NULL,
    happened_at TIMESTAMP NOT NULL,     -- UTC ("at" is an SQL keyword)
    event VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    from_state VARCHAR,
    to_state VARCHAR
);

CREATE TABLE silences (
    id BIGINT NOT NULL,
    matcher VARCHAR NOT NULL,
    starts_at TIMESTAMP NOT NULL,
    ends_at TIMESTAMP NOT NULL,
    reason VARCHAR NOT NULL,
    created_by VARCHAR NOT NULL,
    end_on_resolve BOOLEAN NOT NULL,
    ended_at TIMESTAMP
);

CREATE TABLE notifications (
    id BIGINT NOT NULL,
    incident_id BIGINT NOT NULL,
    event VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    notice JSON NOT NULL,               -- the Notice as created: what is sent, even after restarts
    state VARCHAR NOT NULL,             -- pending | sending | sent | dead
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error VARCHAR,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    ref JSON                            -- the notifier's Delivery.ref (e.g. Slack channel + ts)
);
"""

# Remediation runs (one row per request: planned, refused, shadow, awaiting approval,
# run, verified, undone, interrupted) and every step of each as an audit row. SQL in
# `agent/store_remediations.py`. No primary keys, as for incidents: rows are updated.
_REMEDIATIONS = """
CREATE SEQUENCE remediation_runs_id_seq START 1;
CREATE TABLE remediation_runs (
    id BIGINT NOT NULL DEFAULT nextval('remediation_runs_id_seq'),
    remediation VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    target VARCHAR NOT NULL,            -- the lock and breaker key (probe, or probe/entity)
    incident_id BIGINT,
    actor VARCHAR NOT NULL,             -- who asked: auto, cli:alice, slack:U123, ...
    state VARCHAR NOT NULL,             -- refused|shadow|awaiting_approval|rejected|running|succeeded|failed|ineffective|interrupted
    reason VARCHAR NOT NULL,            -- the guard's or the result's one line
    guard VARCHAR,                      -- the guard that decided, when refused
    plan JSON NOT NULL,                 -- secrets masked
    result JSON,                        -- ActionResult, secrets masked
    verified BOOLEAN,                   -- NULL until the incident's probe ran again
    undo_of BIGINT,                     -- the run this one undoes
    undone_by BIGINT,
    created_at TIMESTAMP NOT NULL,      -- UTC
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);

CREATE SEQUENCE remediation_steps_id_seq START 1;
CREATE TABLE remediation_steps (
    id BIGINT NOT NULL DEFAULT nextval('remediation_steps_id_seq'),
    run_id BIGINT NOT NULL,
    remediation VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    happened_at TIMESTAMP NOT NULL,     -- UTC
    step VARCHAR NOT NULL,              -- planned|refused|shadow|awaiting_approval|approved|rejected|executed|verified|ineffective|breaker_opened|breaker_reset|undone|interrupted
    actor VARCHAR NOT NULL,
    detail VARCHAR NOT NULL             -- secrets masked
);
"""

# Reports generated (files under <data_dir>/reports/) and a link from the outbox to them:
# a report's email is a `notifications` row with event 'report', `incident_id` 0 and
# `report_id` set, so it is retried and never sent twice like an incident notice. The
# sent state of a report is read from those rows. SQL in `agent/store_reports.py`.
_REPORTS = """
CREATE SEQUENCE reports_id_seq START 1;
CREATE TABLE reports (
    id BIGINT NOT NULL DEFAULT nextval('reports_id_seq'),
    name VARCHAR NOT NULL,
    period_start TIMESTAMP NOT NULL,    -- UTC, like every time below
    period_end TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    trigger VARCHAR NOT NULL,           -- schedule | cli | api | demo
    subject VARCHAR NOT NULL,
    html_path VARCHAR NOT NULL,
    text_path VARCHAR NOT NULL,
    availability DOUBLE,                -- the headline figure, percent
    notify VARCHAR[] NOT NULL           -- the notifiers asked to send it ([] = not sent)
);

ALTER TABLE notifications ADD COLUMN report_id BIGINT;

-- Hourly rollups of `results` for reports over long periods (agent/store_rollup.py).
CREATE TABLE rollup_hourly (
    hour TIMESTAMP NOT NULL,            -- start of the hour, UTC
    probe VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    total BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    latency_n BIGINT NOT NULL,          -- results with a latency
    latency_sum DOUBLE NOT NULL,
    latency_buckets SMALLINT[],         -- histogram: bucket b = [0.01 ms * 1.1^b, * 1.1^(b+1))
    latency_counts INTEGER[]            -- results in each of latency_buckets
);

CREATE TABLE rollup_hourly_values (
    hour TIMESTAMP NOT NULL,
    probe VARCHAR NOT NULL,
    name VARCHAR NOT NULL,              -- a top-level numeric value of sql/reconcile results
    runs BIGINT NOT NULL,
    found BIGINT NOT NULL,              -- runs where it was above 0
    peak DOUBLE NOT NULL,
    last DOUBLE NOT NULL,
    last_ts TIMESTAMP NOT NULL
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration("results and meta", _RESULTS_AND_META),
    Migration("probe counters", _PROBE_COUNTERS),
    Migration("incidents, events, silences, notification outbox", _INCIDENTS),
    Migration("remediation runs and steps", _REMEDIATIONS),
    Migration("reports and hourly rollups", _REPORTS),
)

SCHEMA_VERSION = len(MIGRATIONS)
