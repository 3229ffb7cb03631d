DELETE FROM login_failures WHERE id = $1
