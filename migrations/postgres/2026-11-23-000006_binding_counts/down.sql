DROP TRIGGER service_binding_blocks_count ON service_bindings;
DROP FUNCTION service_binding_blocks_count();
DROP TABLE service_binding_blocks;
