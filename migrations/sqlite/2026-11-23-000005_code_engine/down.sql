DROP TABLE registry_secrets;
DROP INDEX service_bindings_key_idx;
DROP INDEX service_bindings_app_prefix_key;
ALTER TABLE service_bindings DROP COLUMN extended;
ALTER TABLE service_bindings DROP COLUMN service_key_guid;
ALTER TABLE service_bindings DROP COLUMN prefix;
ALTER TABLE service_bindings DROP COLUMN role;
