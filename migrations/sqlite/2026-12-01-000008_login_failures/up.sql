-- Failed password logins of the built-in issuer's users, for UAA's lockout policy (so many
-- failures within a window lock the account for a while). Rows, not a counter on the user, so
-- that several tether processes count together and the window slides as UAA's does. A
-- successful login removes the user's rows.
CREATE TABLE login_failures (
  id INTEGER PRIMARY KEY,
  user_guid TEXT NOT NULL,
  at TIMESTAMP NOT NULL
);
CREATE INDEX login_failures_user_at ON login_failures (user_guid, at);
