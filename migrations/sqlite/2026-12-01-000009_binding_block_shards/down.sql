CREATE TABLE service_binding_blocks_single (block INTEGER PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO service_binding_blocks_single (block, n)
  SELECT block, SUM(n) FROM service_binding_blocks GROUP BY block;
DROP TRIGGER service_binding_blocks_insert;
DROP TRIGGER service_binding_blocks_delete;
DROP TABLE service_binding_blocks;
ALTER TABLE service_binding_blocks_single RENAME TO service_binding_blocks;

CREATE TRIGGER service_binding_blocks_insert AFTER INSERT ON service_bindings
BEGIN
  INSERT INTO service_binding_blocks (block, n) VALUES (NEW.id >> 12, 1)
    ON CONFLICT (block) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER service_binding_blocks_delete AFTER DELETE ON service_bindings
BEGIN
  UPDATE service_binding_blocks SET n = n - 1 WHERE block = OLD.id >> 12;
END;
