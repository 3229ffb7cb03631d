SELECT (SELECT count(*) FROM login_failures
        WHERE username = $1 AND at > now() - make_interval(secs => $3::float8)) AS "by_user!",
       (SELECT count(*) FROM login_failures
        WHERE addr = $2 AND at > now() - make_interval(secs => $3::float8)) AS "by_addr!"
