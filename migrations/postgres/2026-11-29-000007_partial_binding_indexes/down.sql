DROP INDEX service_bindings_key_idx;
CREATE INDEX service_bindings_key_idx ON service_bindings (service_key_guid);
DROP INDEX service_bindings_name_idx;
CREATE INDEX service_bindings_name_idx ON service_bindings (name, id);
DROP INDEX service_bindings_app_name_key;
CREATE UNIQUE INDEX service_bindings_app_name_key ON service_bindings (app_guid, name);
