SELECT EXISTS (SELECT 1 FROM images WHERE object_key = $1) AS "in_use!"
