-- OpenSphere schema, version 1: tenancy, users and tokens, products, device
-- groups, devices and the audit log. Written once for SQLite and PostgreSQL:
-- {{serial}} becomes the dialect's auto-increment primary key. Times are Unix
-- microseconds (UTC); booleans are 0/1 integers; *_key columns hold the
-- lower-cased name so that uniqueness ignores letter case.

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    name_key   TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    operator   INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX tokens_user ON tokens(user_id, id);

CREATE TABLE roles (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX roles_user ON roles(user_id);

CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name_key),
    UNIQUE (tenant_id, id)
);

CREATE TABLE device_groups (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    product_id     TEXT NOT NULL,
    name           TEXT NOT NULL,
    name_key       TEXT NOT NULL,
    description    TEXT NOT NULL,
    os_feed        TEXT NOT NULL,
    update_policy  TEXT NOT NULL,
    require_hw_rot INTEGER NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    -- A group can only belong to a product of its own tenant.
    FOREIGN KEY (tenant_id, product_id) REFERENCES products(tenant_id, id),
    UNIQUE (product_id, name_key),
    UNIQUE (tenant_id, id)
);
CREATE INDEX device_groups_tenant ON device_groups(tenant_id, id);

CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    identity_key    TEXT NOT NULL,
    attestation_key TEXT NOT NULL,
    ek_cert         TEXT NOT NULL,
    tenant_id       TEXT REFERENCES tenants(id),
    device_group_id TEXT,
    registered_at   BIGINT NOT NULL,
    claimed_at      BIGINT,
    -- A device can only be in a group of the tenant that claimed it.
    FOREIGN KEY (tenant_id, device_group_id) REFERENCES device_groups(tenant_id, id)
);
CREATE INDEX devices_tenant ON devices(tenant_id, id);
CREATE INDEX devices_group ON devices(device_group_id, id);

CREATE TABLE audit_log (
    seq        {{serial}},
    time       BIGINT NOT NULL,
    tenant_id  TEXT,
    actor_id   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    result     TEXT NOT NULL,
    status     INTEGER NOT NULL,
    request_id TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log(tenant_id, seq);
