-- Issue 13, Code Engine seeds: a binding created without a name gets a generated default name
-- (`<app>-app-ce-service-binding-<5>`), kept in `name` (so the (app_guid, name) unique index
-- keeps names unique per app) and flagged, so that CF clients still see CC's `name: null`.
ALTER TABLE service_bindings ADD COLUMN name_generated BOOLEAN NOT NULL DEFAULT FALSE;
-- A service key's IAM role, validated like a binding's and sent to the broker.
ALTER TABLE service_keys ADD COLUMN role TEXT;
