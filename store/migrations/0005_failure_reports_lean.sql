-- OpenSphere schema, version 5: failure reports cost less to store. Rows
-- arrive in seq order, so retention finds its cut by a search on the
-- primary key (see Store.PurgeFailureReports) and needs no index of its
-- own: every upload no longer pays for one more index entry per event.
DROP INDEX failure_reports_received;
