SELECT pg_advisory_xact_lock(hashtextextended('object:' || $1, 0))
