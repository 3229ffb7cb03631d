-- Gives a job back without counting the attempt (shutdown, or a service
-- outage that is not the job's fault); it is ready again after $4 seconds.
UPDATE jobs SET
    state = 'queued', attempts = attempts - 1, locked_by = NULL, lease_until = NULL,
    run_at = now() + make_interval(secs => $4::float8), updated_at = now()
WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'running'
RETURNING id
