-- Indexes over columns most bindings leave NULL (a name, a service key) now hold only the
-- rows that have a value: every query that uses them compares the column with a value, which
-- implies NOT NULL, and NULLs never collide in a unique index, so no rule changes. Each
-- unnamed binding's insert then touches three fewer index pages (one of them at a random
-- place: the (app_guid, name) index is ordered by app first).
DROP INDEX service_bindings_app_name_key;
CREATE UNIQUE INDEX service_bindings_app_name_key ON service_bindings (app_guid, name) WHERE name IS NOT NULL;
DROP INDEX service_bindings_name_idx;
CREATE INDEX service_bindings_name_idx ON service_bindings (name, id) WHERE name IS NOT NULL;
DROP INDEX service_bindings_key_idx;
CREATE INDEX service_bindings_key_idx ON service_bindings (service_key_guid) WHERE service_key_guid IS NOT NULL;
