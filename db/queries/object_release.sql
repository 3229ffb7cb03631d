DELETE FROM object_reservations WHERE id = $1
