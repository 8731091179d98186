-- CC v2 pages by offset and reports total_results. On a big table both cost a scan: COUNT(*)
-- reads an index end to end, and OFFSET n walks n entries. This table counts the bindings in
-- each block of 4096 ids, kept exact by triggers in the same transaction as the change, so the
-- total is a sum over (rows / 4096) small rows, and a deep page starts inside the right block.
CREATE TABLE service_binding_blocks (
  block BIGINT PRIMARY KEY,
  n BIGINT NOT NULL
);
INSERT INTO service_binding_blocks (block, n)
  SELECT id >> 12, COUNT(*) FROM service_bindings GROUP BY id >> 12;

CREATE FUNCTION service_binding_blocks_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO service_binding_blocks (block, n) VALUES (NEW.id >> 12, 1)
      ON CONFLICT (block) DO UPDATE SET n = service_binding_blocks.n + 1;
  ELSE
    UPDATE service_binding_blocks SET n = n - 1 WHERE block = OLD.id >> 12;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER service_binding_blocks_count AFTER INSERT OR DELETE ON service_bindings
  FOR EACH ROW EXECUTE FUNCTION service_binding_blocks_count();
