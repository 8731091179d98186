-- Service keys: credentials of an instance not tied to an app (`cf create-service-key`).
CREATE TABLE service_keys (
  id INTEGER PRIMARY KEY,
  guid TEXT NOT NULL,
  name TEXT NOT NULL,
  service_instance_guid TEXT NOT NULL REFERENCES service_instances (guid),
  credentials TEXT NOT NULL DEFAULT '{}',
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX service_keys_guid_key ON service_keys (guid);
CREATE UNIQUE INDEX service_keys_instance_name_key ON service_keys (service_instance_guid, name);
