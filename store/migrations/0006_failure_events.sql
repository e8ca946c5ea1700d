-- OpenSphere schema, version 6: failure reports in narrow rows. Version 4
-- stored each event with its tenant, product, group and device as text
-- (36- and 64-character ids), and three of its four indexes began with
-- them: most of an upload's cost was comparing and writing those ids. Now
-- each tenant, each device and each place (tenant, product, group) a
-- device reported from is stored once, and an event refers to them by
-- integer keys. An event still records where its device stood when it
-- reported, and (device, event_id) is still unique. The keys carry no
-- foreign-key constraints, which would cost three lookups per event: the
-- store looks them up (or adds them) in the upload's own transaction, and
-- their rows are never deleted.
CREATE TABLE failure_tenants (
    id        {{serial}},
    tenant_id TEXT NOT NULL UNIQUE
);
CREATE TABLE failure_devices (
    id        {{serial}},
    device_id TEXT NOT NULL UNIQUE
);
CREATE TABLE failure_places (
    id              {{serial}},
    tenant_id       TEXT NOT NULL,
    product_id      TEXT NOT NULL,
    device_group_id TEXT NOT NULL,
    UNIQUE (tenant_id, device_group_id, product_id)
);
CREATE TABLE failure_events (
    seq          {{serial}},
    tenant       BIGINT NOT NULL,
    place        BIGINT NOT NULL,
    device       BIGINT NOT NULL,
    event_id     TEXT NOT NULL,
    class        TEXT NOT NULL,
    category     TEXT NOT NULL,
    description  TEXT NOT NULL,
    component_id TEXT NOT NULL,
    image_id     TEXT NOT NULL,
    version      TEXT NOT NULL,
    exit_code    INTEGER,
    signal       TEXT NOT NULL,
    count        BIGINT NOT NULL,
    first_time   BIGINT NOT NULL,
    last_time    BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    UNIQUE (device, event_id)
);

-- The reports stored so far move over in arrival order. Their sequence
-- numbers are new, so a list page token taken before the upgrade points
-- elsewhere after it (docs/operations.md says so).
INSERT INTO failure_tenants (tenant_id) SELECT DISTINCT tenant_id FROM failure_reports ORDER BY tenant_id;
INSERT INTO failure_devices (device_id) SELECT DISTINCT device_id FROM failure_reports ORDER BY device_id;
INSERT INTO failure_places (tenant_id, product_id, device_group_id)
    SELECT DISTINCT tenant_id, product_id, device_group_id FROM failure_reports ORDER BY tenant_id, device_group_id, product_id;
INSERT INTO failure_events (tenant, place, device, event_id, class, category, description, component_id, image_id, version,
        exit_code, signal, count, first_time, last_time, received_at)
    SELECT t.id, p.id, d.id, r.event_id, r.class, r.category, r.description, r.component_id, r.image_id, r.version,
        r.exit_code, r.signal, r.count, r.first_time, r.last_time, r.received_at
    FROM failure_reports r
    JOIN failure_tenants t ON t.tenant_id = r.tenant_id
    JOIN failure_devices d ON d.device_id = r.device_id
    JOIN failure_places p ON p.tenant_id = r.tenant_id AND p.product_id = r.product_id AND p.device_group_id = r.device_group_id
    ORDER BY r.seq;
DROP TABLE failure_reports;

-- The list (in arrival order), the time-bounded summaries and the
-- deployments' crash counts, as in version 4, on integer keys.
CREATE INDEX failure_events_tenant ON failure_events(tenant, seq);
CREATE INDEX failure_events_time ON failure_events(tenant, last_time);
CREATE INDEX failure_events_image ON failure_events(tenant, image_id, category, last_time);
