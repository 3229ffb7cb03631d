SELECT coalesce(array_agg(id), '{}') AS "ids!" FROM sites
