-- Pairs of first reads of the same photo by two readers (grader-grader agreement).
SELECT a.decision AS first, b.decision AS second, count(*) AS "n!"
FROM review_decisions a
JOIN review_decisions b ON b.item_id = a.item_id AND b.id > a.id AND b.user_id <> a.user_id AND b.stage = 'read'
JOIN review_items ri ON ri.id = a.item_id
WHERE a.stage = 'read' AND ri.site_id = ANY($1::uuid[])
GROUP BY 1, 2
