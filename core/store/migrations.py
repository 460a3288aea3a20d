"""Numbered schema migrations, applied in order at start-up; ``PRAGMA user_version`` is the count.

Never edit a migration that has shipped: append a new one. Times are REAL seconds since the epoch
(UTC); the admin API renders them as RFC 3339.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
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
)
