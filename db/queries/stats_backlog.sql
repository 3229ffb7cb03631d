-- Undecided items by age.
SELECT count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS "under_1h!",
       count(*) FILTER (WHERE created_at <= now() - interval '1 hour' AND created_at > now() - interval '1 day') AS "under_1d!",
       count(*) FILTER (WHERE created_at <= now() - interval '1 day' AND created_at > now() - interval '7 days') AS "under_7d!",
       count(*) FILTER (WHERE created_at <= now() - interval '7 days') AS "over_7d!",
       min(created_at) AS oldest
FROM review_items WHERE state <> 'decided' AND site_id = ANY($1::uuid[])
