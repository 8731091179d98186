CREATE TABLE service_binding_blocks_single (block BIGINT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO service_binding_blocks_single (block, n)
  SELECT block, SUM(n) FROM service_binding_blocks GROUP BY block;
DROP TABLE service_binding_blocks;
ALTER TABLE service_binding_blocks_single RENAME TO service_binding_blocks;
ALTER INDEX service_binding_blocks_single_pkey RENAME TO service_binding_blocks_pkey;

CREATE OR REPLACE FUNCTION service_binding_blocks_count() RETURNS trigger LANGUAGE plpgsql AS $$
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
