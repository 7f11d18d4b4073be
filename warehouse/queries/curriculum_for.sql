-- The curriculum to resume for these settings ($settings_key): the newest unfinished one, else a finished
-- one whose stage-1 or stage-2 export is $export (nothing new since: a rerun has nothing to do).
SELECT * FROM curricula
WHERE settings_key = $settings_key
  AND (status <> 'completed' OR stage1_export_id = $export OR stage2_export_id = $export)
ORDER BY status = 'completed', created_at DESC
LIMIT 1
