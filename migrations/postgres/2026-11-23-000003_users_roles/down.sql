DROP TABLE space_roles;
DROP TABLE org_roles;
DROP TABLE oauth_clients;
DROP TABLE users;
