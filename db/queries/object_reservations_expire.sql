DELETE FROM object_reservations WHERE expires_at <= now()
