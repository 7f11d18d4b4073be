-- The newest chat export written with this target variant and guard prompt (exports from before the
-- variants were recorded count as rear critic, any prompt).
SELECT path FROM exports
WHERE format = 'chat-jsonl'
  AND coalesce(json_extract_string(manifest, '$.critic'), 'rear') = $critic
  AND coalesce(json_extract_string(manifest, '$.guard_prompt'), $prompt) = $prompt
ORDER BY created_at DESC LIMIT 1;
