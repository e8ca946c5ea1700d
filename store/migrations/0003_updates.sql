-- OpenSphere schema, version 3: renewable security. Image signing keys,
-- images (content-addressed, immutable), the platform's OS releases and
-- their feeds, deployments with their rollout state, what each device
-- reports and how far each device got, and each tenant's TUF repository.

-- Keys that sign image packages. role 'publisher': a customer's key whose
-- uploads the tenant accepts; role 'service': the tenant's own key, held by
-- the service (sealed with the KEK), with which it re-signs every image.
-- tenant_id NULL: the platform's keys, for OS releases.
CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT REFERENCES tenants(id),
    key_id     TEXT NOT NULL,
    role       TEXT NOT NULL,
    name       TEXT NOT NULL,
    public_der {{blob}} NOT NULL,
    key_sealed {{blob}},
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX signing_keys_tenant ON signing_keys(tenant_id, key_id);

-- A tenant's images. id is the image id (SHA-256 of the package metadata).
CREATE TABLE images (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    id               TEXT NOT NULL,
    kind             TEXT NOT NULL,
    component_id     TEXT NOT NULL,
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    security_version BIGINT NOT NULL,
    build_time       BIGINT NOT NULL,
    metadata         {{blob}} NOT NULL,
    blob_sha256      TEXT NOT NULL,
    blob_size        BIGINT NOT NULL,
    signer_key_id    TEXT NOT NULL,
    uploaded_by      TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX images_component ON images(tenant_id, component_id, created_at);

-- OS releases of the platform publisher (the operator). RetailEval groups
-- get a release at eval_at, Retail groups at retail_at (later).
CREATE TABLE os_releases (
    id               TEXT PRIMARY KEY,
    component_id     TEXT NOT NULL,
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    security_version BIGINT NOT NULL,
    build_time       BIGINT NOT NULL,
    metadata         {{blob}} NOT NULL,
    blob_sha256      TEXT NOT NULL,
    blob_size        BIGINT NOT NULL,
    signer_key_id    TEXT NOT NULL,
    eval_at          BIGINT NOT NULL,
    retail_at        BIGINT NOT NULL,
    retracted_at     BIGINT,
    created_at       BIGINT NOT NULL
);

-- A deployment: a set of images for a device group, rolled out in waves.
CREATE TABLE deployments (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    device_group_id   TEXT NOT NULL,
    state             TEXT NOT NULL,
    state_reason      TEXT NOT NULL,
    waves             TEXT NOT NULL,
    dwell_seconds     BIGINT NOT NULL,
    failure_permille  INTEGER NOT NULL,
    min_sample        INTEGER NOT NULL,
    current_wave      INTEGER NOT NULL,
    wave_started_at   BIGINT NOT NULL,
    created_by        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, device_group_id) REFERENCES device_groups(tenant_id, id)
);
CREATE INDEX deployments_group ON deployments(tenant_id, device_group_id, created_at);

CREATE TABLE deployment_images (
    deployment_id TEXT NOT NULL REFERENCES deployments(id),
    tenant_id     TEXT NOT NULL,
    image_id      TEXT NOT NULL,
    PRIMARY KEY (deployment_id, image_id),
    FOREIGN KEY (tenant_id, image_id) REFERENCES images(tenant_id, id)
);

-- How far each device got with each deployment.
CREATE TABLE device_updates (
    device_id     TEXT NOT NULL REFERENCES devices(id),
    deployment_id TEXT NOT NULL REFERENCES deployments(id),
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (device_id, deployment_id)
);
CREATE INDEX device_updates_deployment ON device_updates(deployment_id, state);

-- What a device last reported and when it last checked.
ALTER TABLE devices ADD COLUMN update_checked_at BIGINT;
ALTER TABLE devices ADD COLUMN update_error TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN check_now INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN reported TEXT NOT NULL DEFAULT '';

-- Each tenant's TUF repository: keys (private halves sealed with the KEK;
-- NULL once an operator took the root key offline) and every metadata
-- version ever published (append-only).
CREATE TABLE tuf_keys (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    key_id     TEXT NOT NULL,
    role       TEXT NOT NULL,
    public_json {{blob}} NOT NULL,
    key_sealed {{blob}},
    retired    INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);

CREATE TABLE tuf_metadata (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    role       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    body       {{blob}} NOT NULL,
    expires    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, role, version)
);
