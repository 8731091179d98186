-- Issue 13, Code Engine seed 000 ("existing secret"): a binding may use the credential of
-- another binding of the same instance. This is the guid of the broker binding that holds the
-- credential (the first binding's, also after that binding is gone): the broker's binding is
-- unbound when the last binding using it goes.
ALTER TABLE service_bindings ADD COLUMN credential_binding_guid TEXT;
CREATE INDEX service_bindings_credential_idx ON service_bindings (credential_binding_guid)
  WHERE credential_binding_guid IS NOT NULL;
