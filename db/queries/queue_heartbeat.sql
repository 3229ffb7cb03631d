-- Extends the leases this worker still holds; returns those it holds.
UPDATE jobs SET lease_until = now() + make_interval(secs => $3::float8), updated_at = now()
WHERE id = ANY($2) AND locked_by = $1 AND state = 'running'
RETURNING id
