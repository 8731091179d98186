-- IBM Code Engine features (seeds 000, 002) as extensions of v2:
-- a binding's role and environment-variable prefix, binding with an existing credential
-- (a service key), and registry access secrets.
ALTER TABLE service_bindings ADD COLUMN role TEXT;
ALTER TABLE service_bindings ADD COLUMN prefix TEXT;
ALTER TABLE service_bindings ADD COLUMN service_key_guid TEXT REFERENCES service_keys (guid);
-- Whether the client used an extension field; only then are they rendered in the entity, so
-- plain CF clients see exactly CC's document.
ALTER TABLE service_bindings ADD COLUMN extended BOOLEAN NOT NULL DEFAULT FALSE;
-- Two bindings of one app cannot share a prefix (their variables would collide).
CREATE UNIQUE INDEX service_bindings_app_prefix_key ON service_bindings (app_guid, prefix);
CREATE INDEX service_bindings_key_idx ON service_bindings (service_key_guid);

CREATE TABLE registry_secrets (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  name TEXT NOT NULL,
  space_guid TEXT NOT NULL REFERENCES spaces (guid),
  server TEXT NOT NULL,
  username TEXT NOT NULL,
  -- Sealed (AES-256-GCM); never returned.
  password TEXT NOT NULL,
  email TEXT,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX registry_secrets_guid_key ON registry_secrets (guid);
CREATE UNIQUE INDEX registry_secrets_space_name_key ON registry_secrets (space_guid, name);
