-- The worklist page's header, cheap at any backlog: per reason, the
-- undecided items counted up to $2 (the page says "$2+" beyond), those
-- awaiting arbitration, and the oldest; each a range of an index.
SELECT r.reason AS "reason!",
       (SELECT count(*) FROM (SELECT 1 FROM review_items ri
            WHERE ri.state <> 'decided' AND ri.site_id = ANY($1::uuid[]) AND ri.rank = r.rank LIMIT $2) x) AS "n!",
       (SELECT count(*) FROM (SELECT 1 FROM review_items ri
            WHERE ri.state = 'arbitration' AND ri.site_id = ANY($1::uuid[]) AND ri.rank = r.rank LIMIT $2) x) AS "arbitration!",
       (SELECT min(ri.created_at) FROM review_items ri
            WHERE ri.state <> 'decided' AND ri.site_id = ANY($1::uuid[]) AND ri.rank = r.rank) AS oldest
FROM (VALUES (0::smallint, 'referable'), (1::smallint, 'ungradable'), (2::smallint, 'scoring_failed'),
             (3::smallint, 'uncertain'), (4::smallint, 'qa_sample'))
     AS r(rank, reason)
