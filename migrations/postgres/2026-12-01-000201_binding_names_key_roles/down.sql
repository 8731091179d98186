ALTER TABLE service_keys DROP COLUMN role;
ALTER TABLE service_bindings DROP COLUMN name_generated;
