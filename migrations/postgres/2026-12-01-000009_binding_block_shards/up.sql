-- The per-block binding counts (2026-11-23-000006) had one row per block, and every insert into
-- the block updated it: a row lock held until the inserting transaction committed, so
-- concurrent creates queued on it one commit (one WAL flush) at a time. Measured with pgbench,
-- 32 clients inserting one row each: 700 transactions/s with that trigger, 4,000 without it.
-- Each block now has up to 16 counter rows ("shards"); a transaction updates the shard of its
-- own backend process, so concurrent writers (on different pooled connections) rarely meet.
-- A block's count is the sum of its shards; the job runner's sweep folds the shards back into
-- shard 0 now and then, so readers sum about one row per block.
ALTER TABLE service_binding_blocks ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE service_binding_blocks DROP CONSTRAINT service_binding_blocks_pkey;
ALTER TABLE service_binding_blocks ADD PRIMARY KEY (block, shard);

CREATE OR REPLACE FUNCTION service_binding_blocks_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO service_binding_blocks (block, shard, n)
      VALUES (NEW.id >> 12, pg_backend_pid() % 16, 1)
      ON CONFLICT (block, shard) DO UPDATE SET n = service_binding_blocks.n + 1;
  ELSE
    INSERT INTO service_binding_blocks (block, shard, n)
      VALUES (OLD.id >> 12, pg_backend_pid() % 16, -1)
      ON CONFLICT (block, shard) DO UPDATE SET n = service_binding_blocks.n - 1;
  END IF;
  RETURN NULL;
END;
$$;
