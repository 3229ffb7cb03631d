UPDATE batches SET state = $2, finished_at = CASE WHEN $2 = 'done' THEN now() END WHERE id = $1
