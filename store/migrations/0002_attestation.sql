-- OpenSphere schema, version 2: the certificate authorities, attestation
-- state of devices, single-use challenges, the measurement allowlist and
-- the record of issued device certificates. {{blob}} becomes the dialect's
-- byte-string type.

-- The service root CA (P-384). One row; the private key is sealed with the
-- key-encryption key (never stored in the clear).
CREATE TABLE service_ca (
    id         TEXT PRIMARY KEY,
    cert_der   {{blob}},
    key_sealed {{blob}},
    created_at BIGINT NOT NULL
);

-- Per-tenant CAs (P-256), rotated: a successor is made 90 days before the
-- active CA expires and becomes active 45 days later.
CREATE TABLE tenant_cas (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    cert_der     {{blob}},
    key_sealed   {{blob}},
    thumbprint   TEXT NOT NULL,
    not_before   BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    revoked_at   BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX tenant_cas_tenant ON tenant_cas(tenant_id, activates_at);

-- What the manufacturer registered the device's root of trust as, and its
-- attestation state as operators see it.
ALTER TABLE devices ADD COLUMN rot_kind TEXT NOT NULL DEFAULT 'tpm';
ALTER TABLE devices ADD COLUMN revoked_at BIGINT;
ALTER TABLE devices ADD COLUMN revoked_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN last_attest_at BIGINT;
ALTER TABLE devices ADD COLUMN last_attest_result TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN last_attest_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN last_attest_detail TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN cert_not_after BIGINT;

-- Challenges are stateless (MAC'd); this table only remembers the used
-- ones until they expire, so that each is accepted once across replicas.
CREATE TABLE used_nonces (
    nonce_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_nonces_expiry ON used_nonces(expires_at);

-- Measurements a tenant allows its devices to run (until images carry
-- their own): the agent binary and its configuration, by SHA-256.
CREATE TABLE allowed_measurements (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    type       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, type, digest)
);

-- Every device certificate issued, for audit and for a CRL if a cloud
-- integration needs one.
CREATE TABLE device_certs (
    serial     TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    device_id  TEXT NOT NULL REFERENCES devices(id),
    ca_id      TEXT NOT NULL REFERENCES tenant_cas(id),
    not_before BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX device_certs_device ON device_certs(device_id, not_after);
