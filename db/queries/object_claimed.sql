-- Whether an image row points at the object or an upload has it reserved.
SELECT EXISTS (SELECT 1 FROM images WHERE object_key = $1)
    OR EXISTS (SELECT 1 FROM object_reservations WHERE object_key = $1 AND expires_at > now()) AS "claimed!"
