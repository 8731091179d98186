-- The durable job queue: broker polls, orphan mitigation, async deletes. A job is claimed by
-- setting locked_by/locked_until; a claim that outlives locked_until (a crashed process) is
-- claimable again, so no job is lost and none runs twice at once.
CREATE TABLE jobs (
  id BIGSERIAL PRIMARY KEY,
  guid TEXT NOT NULL,
  kind TEXT NOT NULL,
  resource_guid TEXT,
  payload TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  run_at TIMESTAMP NOT NULL,
  locked_by TEXT,
  locked_until TIMESTAMP,
  last_error TEXT,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX jobs_guid_key ON jobs (guid);
CREATE INDEX jobs_due_idx ON jobs (state, run_at);
CREATE INDEX jobs_resource_idx ON jobs (resource_guid);
