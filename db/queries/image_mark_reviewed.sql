UPDATE images SET status = 'reviewed' WHERE id = $1
