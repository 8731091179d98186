-- In step with PostgreSQL's migration of the same name, which splits each block's count into
-- shards so that concurrent writers do not queue on one row. SQLite has one writer at a time,
-- so its triggers keep using shard 0; the table has the same shape on both backends.
CREATE TABLE service_binding_blocks_sharded (
  block INTEGER NOT NULL,
  shard INTEGER NOT NULL DEFAULT 0,
  n INTEGER NOT NULL,
  PRIMARY KEY (block, shard)
);
INSERT INTO service_binding_blocks_sharded (block, shard, n)
  SELECT block, 0, n FROM service_binding_blocks;
DROP TRIGGER service_binding_blocks_insert;
DROP TRIGGER service_binding_blocks_delete;
DROP TABLE service_binding_blocks;
ALTER TABLE service_binding_blocks_sharded RENAME TO service_binding_blocks;

CREATE TRIGGER service_binding_blocks_insert AFTER INSERT ON service_bindings
BEGIN
  INSERT INTO service_binding_blocks (block, shard, n) VALUES (NEW.id >> 12, 0, 1)
    ON CONFLICT (block, shard) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER service_binding_blocks_delete AFTER DELETE ON service_bindings
BEGIN
  UPDATE service_binding_blocks SET n = n - 1 WHERE block = OLD.id >> 12 AND shard = 0;
END;
