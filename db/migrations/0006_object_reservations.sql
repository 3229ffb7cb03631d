-- An upload reserves its object key before it looks at the store; the orphan
-- sweep deletes an object only while holding the key's lock and finding
-- neither an image row nor a live reservation for it. Both take the same
-- advisory lock on the key (shared by uploads, exclusive by the sweep), so a
-- sweep cannot delete an object between an upload's look at the store and
-- its commit. A reservation outlives any request; one left by a failed upload
-- expires, and the sweep then reclaims what nothing references.
CREATE TABLE object_reservations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    object_key  text NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX object_reservations_key ON object_reservations (object_key);
