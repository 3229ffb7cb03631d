SELECT sd.id, sd.site_id, st.name AS site, sd.patient_ref, sd.captured_at
FROM studies sd JOIN sites st ON st.id = sd.site_id WHERE sd.id = $1
