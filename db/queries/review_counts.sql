-- The worklist's header: undecided items per reason and state, and the
-- oldest. Grouped by rank (one to one with the reason) so that the worklist
-- index answers it alone.
SELECT CASE rank WHEN 0 THEN 'referable' WHEN 1 THEN 'ungradable' WHEN 2 THEN 'scoring_failed'
                 WHEN 3 THEN 'uncertain' ELSE 'qa_sample' END AS "reason!",
       state, count(*) AS "n!", min(created_at) AS "oldest!"
FROM review_items
WHERE state <> 'decided' AND site_id = ANY($1::uuid[])
GROUP BY rank, state
