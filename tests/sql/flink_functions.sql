-- Flink's functions with Flink's meaning (Java date patterns, JSON paths,
-- IF, MOD, TIMESTAMPDIFF ..), and identifiers that keep their case:
-- `itemName` and `ITEMNAME` are two columns.
CREATE TABLE events (
  userId BIGINT, itemName STRING, ITEMNAME STRING, eventTime TIMESTAMP(3),
  url STRING, payload STRING, epochSec BIGINT,
  WATERMARK FOR eventTime AS eventTime - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/events.jsonl', 'format' = 'json');

CREATE TABLE out (
  userId BIGINT, itemName STRING, sku STRING, `day` STRING, clock STRING,
  daysSinceXmas INT, bucket BIGINT, amount STRING, host STRING, section STRING,
  refAt INT, qty INT, tags STRING, fromEpoch STRING, reparsed TIMESTAMP(3)
) WITH (connector = 'filesystem', path = '${OUT}', format = 'json');

INSERT INTO out
SELECT
  userId,
  itemName,
  ITEMNAME,
  DATE_FORMAT(eventTime, 'yyyy-MM-dd'),
  DATE_FORMAT(eventTime, 'EEE HH:mm:ss.SSS'),
  TIMESTAMPDIFF(DAY, TIMESTAMP '2024-12-25 00:00:00', eventTime),
  MOD(userId, 4),
  IF(JSON_VALUE(payload, '$.qty' RETURNING INT) > 1, 'many', 'few'),
  REGEXP_EXTRACT(url, '^[a-z]+://([^/]+)', 1),
  SPLIT_INDEX(url, '/', 3),
  LOCATE('ref=', url),
  JSON_VALUE(payload, '$.qty' RETURNING INT),
  JSON_QUERY(payload, '$.tags'),
  FROM_UNIXTIME(epochSec, 'yyyy/MM/dd HH:mm'),
  TO_TIMESTAMP(DATE_FORMAT(eventTime, 'dd.MM.yyyy HH:mm'), 'dd.MM.yyyy HH:mm')
FROM events
-- Calls on literals only, evaluated for each batch (a stream folds nothing).
WHERE DATE_FORMAT(TIMESTAMP '2025-01-01 00:00:00', 'yyyy') = '2025'
  AND JSON_VALUE('{"ok": true}', '$.ok') = 'true'
  AND LOCATE('b', 'abc') = 2
  AND TIMESTAMPDIFF(DAY, DATE '2025-01-01', DATE '2025-01-02') = 1;
