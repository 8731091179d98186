-- Users known to CC (guid = the UAA user id) and, for the built-in issuer, their login data;
-- OAuth clients of the built-in issuer; org and space roles.
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  guid TEXT NOT NULL,
  username TEXT,
  password_hash TEXT,
  origin TEXT NOT NULL DEFAULT 'uaa',
  scopes TEXT NOT NULL DEFAULT '[]',
  active BOOLEAN NOT NULL DEFAULT TRUE,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX users_guid_key ON users (guid);
CREATE UNIQUE INDEX users_username_key ON users (username);

CREATE TABLE oauth_clients (
  id INTEGER PRIMARY KEY,
  client_id TEXT NOT NULL,
  secret_hash TEXT,
  scopes TEXT NOT NULL DEFAULT '[]',
  grant_types TEXT NOT NULL DEFAULT '[]',
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX oauth_clients_client_id_key ON oauth_clients (client_id);

CREATE TABLE org_roles (
  id INTEGER PRIMARY KEY,
  organization_guid TEXT NOT NULL REFERENCES organizations (guid),
  user_guid TEXT NOT NULL REFERENCES users (guid),
  role TEXT NOT NULL,
  created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX org_roles_key ON org_roles (organization_guid, user_guid, role);
CREATE INDEX org_roles_user_idx ON org_roles (user_guid);

CREATE TABLE space_roles (
  id INTEGER PRIMARY KEY,
  space_guid TEXT NOT NULL REFERENCES spaces (guid),
  user_guid TEXT NOT NULL REFERENCES users (guid),
  role TEXT NOT NULL,
  created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX space_roles_key ON space_roles (space_guid, user_guid, role);
CREATE INDEX space_roles_user_idx ON space_roles (user_guid);
