-- OpenSphere schema, version 4: failure reports. Each row is one event a
-- device uploaded, with where the device stood (tenant, product, group)
-- when it did. (device_id, event_id) is unique: a batch sent again after a
-- lost answer is stored once. seq orders rows by arrival and is the list's
-- cursor.
CREATE TABLE failure_reports (
    seq             {{serial}},
    tenant_id       TEXT NOT NULL,
    product_id      TEXT NOT NULL,
    device_group_id TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    class           TEXT NOT NULL,
    category        TEXT NOT NULL,
    description     TEXT NOT NULL,
    component_id    TEXT NOT NULL,
    image_id        TEXT NOT NULL,
    version         TEXT NOT NULL,
    exit_code       INTEGER,
    signal          TEXT NOT NULL,
    count           BIGINT NOT NULL,
    first_time      BIGINT NOT NULL,
    last_time       BIGINT NOT NULL,
    received_at     BIGINT NOT NULL,
    UNIQUE (device_id, event_id)
);
CREATE INDEX failure_reports_tenant ON failure_reports(tenant_id, seq);
CREATE INDEX failure_reports_time ON failure_reports(tenant_id, last_time);
CREATE INDEX failure_reports_image ON failure_reports(tenant_id, image_id, category, last_time);
CREATE INDEX failure_reports_received ON failure_reports(received_at);

-- A deployment halts by itself when devices on it crash more than
-- crash_ratio_percent of the rate of the devices still on the previous
-- deployment; 0 turns the comparison off.
ALTER TABLE deployments ADD COLUMN crash_ratio_percent INTEGER NOT NULL DEFAULT 200;
