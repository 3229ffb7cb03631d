SELECT site_id FROM studies WHERE id = $1
