-- Leadership among `fundus mesos` instances: a session-level advisory lock,
-- released by Postgres the moment the holder's connection ends.
SELECT pg_try_advisory_lock(hashtextextended('fundus-mesos:' || $1, 0)) AS "locked!"
