-- Core CC v2 resources needed by a service binding. GUIDs are the public identity and the
-- foreign keys; `id` gives a stable creation order for CC's default `ORDER BY id`.

CREATE TABLE organizations (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active',
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX organizations_guid_key ON organizations (guid);
CREATE UNIQUE INDEX organizations_name_key ON organizations (name);

CREATE TABLE spaces (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  name TEXT NOT NULL,
  organization_guid TEXT NOT NULL REFERENCES organizations (guid),
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX spaces_guid_key ON spaces (guid);
CREATE UNIQUE INDEX spaces_org_name_key ON spaces (organization_guid, name);

CREATE TABLE apps (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  name TEXT NOT NULL,
  space_guid TEXT NOT NULL REFERENCES spaces (guid),
  state TEXT NOT NULL DEFAULT 'STOPPED',
  memory BIGINT NOT NULL DEFAULT 1024,
  instances INTEGER NOT NULL DEFAULT 1,
  disk_quota BIGINT NOT NULL DEFAULT 1024,
  environment_json TEXT NOT NULL DEFAULT '{}',
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX apps_guid_key ON apps (guid);
CREATE UNIQUE INDEX apps_space_name_key ON apps (space_guid, name);

CREATE TABLE service_brokers (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  name TEXT NOT NULL,
  broker_url TEXT NOT NULL,
  auth_username TEXT NOT NULL,
  auth_password TEXT NOT NULL,
  space_guid TEXT REFERENCES spaces (guid),
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX service_brokers_guid_key ON service_brokers (guid);
CREATE UNIQUE INDEX service_brokers_name_key ON service_brokers (name);

CREATE TABLE services (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  service_broker_guid TEXT NOT NULL REFERENCES service_brokers (guid),
  unique_id TEXT NOT NULL,
  label TEXT NOT NULL,
  description TEXT NOT NULL,
  active BOOLEAN NOT NULL DEFAULT TRUE,
  bindable BOOLEAN NOT NULL,
  tags TEXT NOT NULL DEFAULT '[]',
  requires TEXT NOT NULL DEFAULT '[]',
  extra TEXT,
  plan_updateable BOOLEAN NOT NULL DEFAULT FALSE,
  bindings_retrievable BOOLEAN NOT NULL DEFAULT FALSE,
  instances_retrievable BOOLEAN NOT NULL DEFAULT FALSE,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX services_guid_key ON services (guid);
CREATE UNIQUE INDEX services_broker_unique_id_key ON services (service_broker_guid, unique_id);

CREATE TABLE service_plans (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  service_guid TEXT NOT NULL REFERENCES services (guid),
  unique_id TEXT NOT NULL,
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  free BOOLEAN NOT NULL DEFAULT TRUE,
  bindable BOOLEAN,
  plan_updateable BOOLEAN,
  public BOOLEAN NOT NULL DEFAULT TRUE,
  active BOOLEAN NOT NULL DEFAULT TRUE,
  extra TEXT,
  schemas TEXT,
  maximum_polling_duration BIGINT,
  maintenance_info TEXT,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX service_plans_guid_key ON service_plans (guid);
CREATE UNIQUE INDEX service_plans_service_unique_id_key ON service_plans (service_guid, unique_id);

CREATE TABLE service_plan_visibilities (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  service_plan_guid TEXT NOT NULL REFERENCES service_plans (guid),
  organization_guid TEXT NOT NULL REFERENCES organizations (guid),
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX service_plan_visibilities_guid_key ON service_plan_visibilities (guid);
CREATE UNIQUE INDEX service_plan_visibilities_plan_org_key ON service_plan_visibilities (service_plan_guid, organization_guid);

CREATE TABLE service_instances (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  name TEXT NOT NULL,
  space_guid TEXT NOT NULL REFERENCES spaces (guid),
  is_user_provided BOOLEAN NOT NULL,
  service_plan_guid TEXT REFERENCES service_plans (guid),
  credentials TEXT,
  syslog_drain_url TEXT,
  route_service_url TEXT,
  tags TEXT NOT NULL DEFAULT '[]',
  dashboard_url TEXT,
  last_operation_type TEXT,
  last_operation_state TEXT,
  last_operation_description TEXT,
  broker_operation TEXT,
  last_operation_updated_at TIMESTAMP,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX service_instances_guid_key ON service_instances (guid);
CREATE UNIQUE INDEX service_instances_space_name_key ON service_instances (space_guid, name);
CREATE INDEX service_instances_plan_idx ON service_instances (service_plan_guid);

CREATE TABLE service_bindings (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  app_guid TEXT NOT NULL REFERENCES apps (guid),
  service_instance_guid TEXT NOT NULL REFERENCES service_instances (guid),
  name TEXT,
  credentials TEXT NOT NULL DEFAULT '{}',
  syslog_drain_url TEXT,
  volume_mounts TEXT NOT NULL DEFAULT '[]',
  last_operation_type TEXT,
  last_operation_state TEXT,
  last_operation_description TEXT,
  broker_operation TEXT,
  last_operation_created_at TIMESTAMP,
  last_operation_updated_at TIMESTAMP,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX service_bindings_guid_key ON service_bindings (guid);
-- One binding per app and instance, and binding names unique per app (NULL names are distinct):
-- enforced here so that parallel creates cannot both win (CC issue #1872).
CREATE UNIQUE INDEX service_bindings_app_instance_key ON service_bindings (app_guid, service_instance_guid);
CREATE UNIQUE INDEX service_bindings_app_name_key ON service_bindings (app_guid, name);
CREATE INDEX service_bindings_instance_idx ON service_bindings (service_instance_guid, id);
CREATE INDEX service_bindings_app_idx ON service_bindings (app_guid, id);
CREATE INDEX service_bindings_name_idx ON service_bindings (name, id);
