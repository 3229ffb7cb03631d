SELECT pg_notify('fundus_jobs', $1)
