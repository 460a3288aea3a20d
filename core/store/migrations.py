"""Numbered schema migrations in each dialect, applied in order at start-up: SQLite counts them in
``PRAGMA user_version``, PostgreSQL in a ``schema_migrations`` table. Migration N is the same
change in both lists.

Never edit a migration that has shipped: append a new one, to both lists. Times are seconds since
the epoch (UTC) as REAL / DOUBLE PRECISION; the admin API renders them as RFC 3339.
"""

from __future__ import annotations

SQLITE_MIGRATIONS: tuple[str, ...] = (
    # 1: the directory (organizations, projects, users, applications), keys, secrets, change feed.
    """
    CREATE TABLE organizations (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        default_project_id TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (organization_id, name)
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        email TEXT NOT NULL,
        permission_sets TEXT NOT NULL DEFAULT '[]',
        is_owner INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (organization_id, email)
    );
    CREATE TABLE applications (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        permission_sets TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE api_keys (
        access_key TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        user_id TEXT REFERENCES users(id),
        application_id TEXT REFERENCES applications(id),
        default_project_id TEXT NOT NULL REFERENCES projects(id),
        description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 200),
        mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        last_used_at REAL,
        creation_ip TEXT,
        CHECK ((user_id IS NULL) <> (application_id IS NULL))
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);
    CREATE INDEX api_keys_application ON api_keys (application_id);
    CREATE INDEX api_keys_project ON api_keys (default_project_id);
    CREATE TABLE key_secrets (
        secret_hash BLOB PRIMARY KEY,
        access_key TEXT NOT NULL REFERENCES api_keys(access_key) ON DELETE CASCADE,
        secret_prefix TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL
    ) WITHOUT ROWID;
    CREATE INDEX key_secrets_access_key ON key_secrets (access_key);
    CREATE TABLE key_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        access_key TEXT NOT NULL,
        action TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX key_events_created ON key_events (created_at)
    """,
    # 2: the audit log: append-only, one row per mutation and per denied attempt.
    """
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        organization_id TEXT,
        actor_type TEXT NOT NULL,
        actor_id TEXT,
        actor_access_key TEXT,
        action TEXT NOT NULL,
        target_type TEXT,
        target_id TEXT,
        source_ip TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('success', 'denied')),
        detail TEXT
    );
    CREATE INDEX audit_events_created ON audit_events (created_at);
    CREATE INDEX audit_events_target ON audit_events (target_id);
    CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END
    """,
    # 3: revoked keys remembered (no secret, no hash), so revoking one twice, or reading it, says
    # "revoked at" instead of "does not exist". Filled from the audit log for keys revoked before.
    """
    CREATE TABLE revoked_keys (
        access_key TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL,
        user_id TEXT,
        application_id TEXT,
        revoked_at REAL NOT NULL
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO revoked_keys (access_key, organization_id, revoked_at)
        SELECT target_id, organization_id, max(created_at) FROM audit_events
        WHERE action = 'api_key.delete' AND outcome = 'success' AND target_id IS NOT NULL
            AND organization_id IS NOT NULL
        GROUP BY target_id
    """,
    # 4: per-key policies, as JSON lists (core.policies): rate limits, the IP allowlist, and the
    # permissions of a restricted key (NULL: the key is not restricted).
    """
    ALTER TABLE api_keys ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE api_keys ADD COLUMN permissions TEXT
    """,
    # 5: requests per key and hour (hours since the epoch, UTC), by outcome: for the console's
    # usage charts. Written in batches by every gateway, pruned after 90 days.
    """
    CREATE TABLE key_usage (
        access_key TEXT NOT NULL,
        hour INTEGER NOT NULL,
        allowed INTEGER NOT NULL DEFAULT 0,
        denied INTEGER NOT NULL DEFAULT 0,
        limited INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (access_key, hour)
    ) WITHOUT ROWID;
    CREATE INDEX key_usage_hour ON key_usage (hour)
    """,
    # 6: keys switched off without being revoked, and a key's metadata (a JSON object sent
    # upstream with every request it makes).
    """
    ALTER TABLE api_keys ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE api_keys ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'
    """,
    # 7: plans (rate limits, credits and metadata shared by name), a plan on a key or on its
    # bearer, a bearer's own budget (rate limits and credits for all its keys), a key's own
    # credits; credit balances and the reservations gateways hold against them
    # (docs/plans-and-credits.md says how a balance is spent); credits spent per key and hour.
    """
    CREATE TABLE plans (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        rate_limits TEXT NOT NULL DEFAULT '[]',
        credits TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (organization_id, name)
    );
    ALTER TABLE api_keys ADD COLUMN plan_id TEXT REFERENCES plans(id);
    ALTER TABLE api_keys ADD COLUMN credits TEXT;
    ALTER TABLE users ADD COLUMN plan_id TEXT REFERENCES plans(id);
    ALTER TABLE users ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE users ADD COLUMN credits TEXT;
    ALTER TABLE applications ADD COLUMN plan_id TEXT REFERENCES plans(id);
    ALTER TABLE applications ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE applications ADD COLUMN credits TEXT;
    CREATE INDEX api_keys_plan ON api_keys (plan_id);
    CREATE TABLE credit_balances (
        owner TEXT PRIMARY KEY,
        period TEXT NOT NULL,
        remaining INTEGER NOT NULL CHECK (remaining >= 0),
        epoch INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE credit_leases (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        period TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        granted INTEGER NOT NULL,
        ceiling INTEGER NOT NULL,
        spent INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        CHECK (spent <= ceiling AND ceiling <= granted)
    ) WITHOUT ROWID;
    CREATE INDEX credit_leases_owner ON credit_leases (owner);
    CREATE INDEX credit_leases_expiry ON credit_leases (expires_at);
    ALTER TABLE key_usage ADD COLUMN credits INTEGER NOT NULL DEFAULT 0
    """,
    # 8: the hashes of revoked keys' secrets, so the verify API can tell a revoked key from one
    # never issued (no secret is kept, only its SHA-256, as in key_secrets).
    """
    CREATE TABLE revoked_secrets (
        secret_hash BLOB PRIMARY KEY,
        access_key TEXT NOT NULL,
        revoked_at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    # 9: webhooks and their outbox: one row per event and webhook, written in the transaction of
    # the change it tells of (core.store.webhooks), delivered by a background task and kept as
    # the webhook's delivery log. key_notices remembers the notices sent once (a key expiring in
    # 7 days, rate limited in a given hour), whichever node noticed first.
    """
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        secret TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX webhooks_organization ON webhooks (organization_id);
    CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        message_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        access_key TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        claimed_until REAL,
        claim_token TEXT,
        last_status_code INTEGER,
        last_error TEXT,
        last_attempt_at REAL,
        delivered_at REAL
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
    CREATE INDEX webhook_outbox_order ON webhook_outbox (webhook_id, access_key, id);
    CREATE TABLE key_notices (
        access_key TEXT NOT NULL,
        notice TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (access_key, notice)
    ) WITHOUT ROWID;
    CREATE INDEX api_keys_expires ON api_keys (expires_at)
    """,
    # 10: leak reports: a key of ours found where it should not be (GitHub secret scanning, the
    # public revocation endpoint), with where, kept after the key is revoked.
    """
    CREATE TABLE key_leaks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        access_key TEXT NOT NULL,
        organization_id TEXT NOT NULL,
        reported_at REAL NOT NULL,
        reporter TEXT NOT NULL,
        url TEXT,
        source TEXT
    );
    CREATE INDEX key_leaks_organization ON key_leaks (organization_id, reported_at)
    """,
    # 11: an organization's lifetime policy for its keys (NULL: no limit): how long a key may
    # live at most, and after how long unused it is put out of use by housekeeping.
    """
    CREATE TABLE organization_policies (
        organization_id TEXT PRIMARY KEY REFERENCES organizations(id),
        max_key_lifetime_days INTEGER,
        disable_unused_after_days INTEGER,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    # 12: keys imported from another gateway (Kong, Unkey, a CSV): found by their secret's hash
    # alone, marked so everywhere, until rolled into our format.
    """
    ALTER TABLE api_keys ADD COLUMN imported INTEGER NOT NULL DEFAULT 0
    """,
    # 13: when a disabled key was last enabled again: its unused time for
    # disable_unused_after_days starts there (else housekeeping disables it again at once).
    """
    ALTER TABLE api_keys ADD COLUMN enabled_at REAL
    """,
    # 14: leases reclaimed from gateways that died, kept for a while with their ceiling, so
    # that the spend journal a dead gateway left on its node can still give back what it had
    # not spent below that ceiling; and leases settled, with what they spent, so that each is
    # settled once (core.store.credits.settle).
    """
    CREATE TABLE credit_tombstones (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        period TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        ceiling INTEGER NOT NULL,
        spent INTEGER,
        ended_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX credit_tombstones_owner ON credit_tombstones (owner);
    CREATE INDEX credit_tombstones_age ON credit_tombstones (ended_at)
    """,
    # 15: what a balance owes after its plan's amount was lowered below what its leases hold:
    # paid first from what they give back (core.store.credits.rebase), so a budget cut mid-
    # period keeps what was spent spent.
    """
    ALTER TABLE credit_balances ADD COLUMN debt INTEGER NOT NULL DEFAULT 0
    """,
)


POSTGRES_MIGRATIONS: tuple[str, ...] = (
    # 1: the directory, keys, secrets, change feed. Every insert into the feed notifies the
    # followers in its own transaction (delivered at commit): the payload is the event id only.
    # Each event records its transaction id, so a follower can read the feed completely.
    """
    CREATE TABLE organizations (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        default_project_id TEXT,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        UNIQUE (organization_id, name)
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        email TEXT NOT NULL,
        permission_sets TEXT NOT NULL DEFAULT '[]',
        is_owner INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        UNIQUE (organization_id, email)
    );
    CREATE TABLE applications (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        permission_sets TEXT NOT NULL DEFAULT '[]',
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE api_keys (
        access_key TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        user_id TEXT REFERENCES users(id),
        application_id TEXT REFERENCES applications(id),
        default_project_id TEXT NOT NULL REFERENCES projects(id),
        description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 200),
        mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        last_used_at DOUBLE PRECISION,
        creation_ip TEXT,
        CHECK ((user_id IS NULL) <> (application_id IS NULL))
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);
    CREATE INDEX api_keys_application ON api_keys (application_id);
    CREATE INDEX api_keys_project ON api_keys (default_project_id);
    CREATE TABLE key_secrets (
        secret_hash BYTEA PRIMARY KEY,
        access_key TEXT NOT NULL REFERENCES api_keys(access_key) ON DELETE CASCADE,
        secret_prefix TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION
    );
    CREATE INDEX key_secrets_access_key ON key_secrets (access_key);
    CREATE TABLE key_events (
        id BIGSERIAL PRIMARY KEY,
        access_key TEXT NOT NULL,
        action TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        -- the writing transaction: ids from a sequence can commit out of order, transaction
        -- ids against a snapshot's xmin cannot be missed (core.store.keys.read_feed)
        xact_id BIGINT NOT NULL DEFAULT pg_current_xact_id()::text::bigint
    );
    CREATE INDEX key_events_created ON key_events (created_at);
    CREATE INDEX key_events_xact ON key_events (xact_id);
    CREATE FUNCTION gateway_notify_key_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('gateway_key_events', NEW.id::text);
        RETURN NULL;
    END $$;
    CREATE TRIGGER key_events_notify AFTER INSERT ON key_events
        FOR EACH ROW EXECUTE FUNCTION gateway_notify_key_event();
    """,
    # 2: the audit log: append-only, one row per mutation and per denied attempt.
    """
    CREATE TABLE audit_events (
        id BIGSERIAL PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        organization_id TEXT,
        actor_type TEXT NOT NULL,
        actor_id TEXT,
        actor_access_key TEXT,
        action TEXT NOT NULL,
        target_type TEXT,
        target_id TEXT,
        source_ip TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('success', 'denied')),
        detail TEXT
    );
    CREATE INDEX audit_events_created ON audit_events (created_at);
    CREATE INDEX audit_events_target ON audit_events (target_id);
    CREATE FUNCTION gateway_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_events is append-only';
    END $$;
    CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION gateway_audit_append_only();
    """,
    # 3: revoked keys remembered (no secret, no hash).
    """
    CREATE TABLE revoked_keys (
        access_key TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL,
        user_id TEXT,
        application_id TEXT,
        revoked_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 4: per-key policies, as JSON lists (core.policies): rate limits, the IP allowlist, and the
    # permissions of a restricted key (NULL: the key is not restricted).
    """
    ALTER TABLE api_keys ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE api_keys ADD COLUMN permissions TEXT;
    """,
    # 5: requests per key and hour, by outcome (see the SQLite migration).
    """
    CREATE TABLE key_usage (
        access_key TEXT NOT NULL,
        hour BIGINT NOT NULL,
        allowed BIGINT NOT NULL DEFAULT 0,
        denied BIGINT NOT NULL DEFAULT 0,
        limited BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (access_key, hour)
    );
    CREATE INDEX key_usage_hour ON key_usage (hour);
    """,
    # 6: keys switched off without being revoked, and a key's metadata.
    """
    ALTER TABLE api_keys ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE api_keys ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
    """,
    # 7: plans, bearers' budgets, keys' credits, balances and reservations (see SQLite's).
    """
    CREATE TABLE plans (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        rate_limits TEXT NOT NULL DEFAULT '[]',
        credits TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        UNIQUE (organization_id, name)
    );
    ALTER TABLE api_keys ADD COLUMN plan_id TEXT REFERENCES plans(id);
    ALTER TABLE api_keys ADD COLUMN credits TEXT;
    ALTER TABLE users ADD COLUMN plan_id TEXT REFERENCES plans(id);
    ALTER TABLE users ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE users ADD COLUMN credits TEXT;
    ALTER TABLE applications ADD COLUMN plan_id TEXT REFERENCES plans(id);
    ALTER TABLE applications ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE applications ADD COLUMN credits TEXT;
    CREATE INDEX api_keys_plan ON api_keys (plan_id);
    CREATE TABLE credit_balances (
        owner TEXT PRIMARY KEY,
        period TEXT NOT NULL,
        remaining BIGINT NOT NULL CHECK (remaining >= 0),
        epoch BIGINT NOT NULL DEFAULT 0,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE credit_leases (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        period TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        granted BIGINT NOT NULL,
        ceiling BIGINT NOT NULL,
        spent BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        CHECK (spent <= ceiling AND ceiling <= granted)
    );
    CREATE INDEX credit_leases_owner ON credit_leases (owner);
    CREATE INDEX credit_leases_expiry ON credit_leases (expires_at);
    ALTER TABLE key_usage ADD COLUMN credits BIGINT NOT NULL DEFAULT 0;
    """,
    # 8: the hashes of revoked keys' secrets (see the SQLite migration).
    """
    CREATE TABLE revoked_secrets (
        secret_hash BYTEA PRIMARY KEY,
        access_key TEXT NOT NULL,
        revoked_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 9: webhooks, their outbox and the notices sent once (see the SQLite migration).
    """
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id),
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        secret TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX webhooks_organization ON webhooks (organization_id);
    CREATE TABLE webhook_outbox (
        id BIGSERIAL PRIMARY KEY,
        webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        message_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        access_key TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        claimed_until DOUBLE PRECISION,
        claim_token TEXT,
        last_status_code INTEGER,
        last_error TEXT,
        last_attempt_at DOUBLE PRECISION,
        delivered_at DOUBLE PRECISION
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
    CREATE INDEX webhook_outbox_order ON webhook_outbox (webhook_id, access_key, id);
    CREATE TABLE key_notices (
        access_key TEXT NOT NULL,
        notice TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (access_key, notice)
    );
    CREATE INDEX api_keys_expires ON api_keys (expires_at);
    """,
    # 10: leak reports (see the SQLite migration).
    """
    CREATE TABLE key_leaks (
        id BIGSERIAL PRIMARY KEY,
        access_key TEXT NOT NULL,
        organization_id TEXT NOT NULL,
        reported_at DOUBLE PRECISION NOT NULL,
        reporter TEXT NOT NULL,
        url TEXT,
        source TEXT
    );
    CREATE INDEX key_leaks_organization ON key_leaks (organization_id, reported_at);
    """,
    # 11: an organization's lifetime policy for its keys (see the SQLite migration).
    """
    CREATE TABLE organization_policies (
        organization_id TEXT PRIMARY KEY REFERENCES organizations(id),
        max_key_lifetime_days INTEGER,
        disable_unused_after_days INTEGER,
        updated_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 12: keys imported from another gateway (see the SQLite migration).
    """
    ALTER TABLE api_keys ADD COLUMN imported INTEGER NOT NULL DEFAULT 0;
    """,
    # 13: when a disabled key was last enabled again (see the SQLite migration).
    """
    ALTER TABLE api_keys ADD COLUMN enabled_at DOUBLE PRECISION;
    """,
    # 14: reclaimed leases kept with their ceiling (see the SQLite migration).
    """
    CREATE TABLE credit_tombstones (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        period TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        ceiling BIGINT NOT NULL,
        spent BIGINT,
        ended_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX credit_tombstones_owner ON credit_tombstones (owner);
    CREATE INDEX credit_tombstones_age ON credit_tombstones (ended_at);
    """,
    # 15: what a balance owes after its plan's amount was lowered (see the SQLite migration).
    """
    ALTER TABLE credit_balances ADD COLUMN debt BIGINT NOT NULL DEFAULT 0;
    """,
)
