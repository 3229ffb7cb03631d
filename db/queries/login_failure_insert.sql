-- Records a log-in attempt before its password is checked, and forgets
-- those older than the window ($3 s).
WITH forgotten AS (
    DELETE FROM login_failures WHERE at < now() - make_interval(secs => $3::float8)
)
INSERT INTO login_failures (username, addr) VALUES ($1, $2)
RETURNING id
