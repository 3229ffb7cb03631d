-- Waits while a sweep holds the key (its lock is exclusive), then reserves it.
WITH locked AS (SELECT pg_advisory_xact_lock_shared(hashtextextended('object:' || $1, 0)))
INSERT INTO object_reservations (object_key, expires_at)
SELECT $1, now() + make_interval(secs => $2) FROM locked
RETURNING id
