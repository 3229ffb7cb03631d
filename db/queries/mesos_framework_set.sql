INSERT INTO mesos_frameworks (name, framework_id) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET framework_id = EXCLUDED.framework_id, updated_at = now()
