CREATE TABLE events (userId BIGINT, itemName STRING)
WITH ('connector' = 'filesystem', 'path' = 'events.jsonl', 'format' = 'json');

-- Identifiers keep their case, as in Flink: ITEMNAME is not itemName.
SELECT userId, ITEMNAME FROM events;
