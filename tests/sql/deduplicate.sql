-- Flink's deduplication query: the first delivery of each event_id goes on,
-- redeliveries (112 of 681 lines) are dropped.
CREATE TABLE orders (
  event_id VARCHAR, event_type VARCHAR, order_id BIGINT, customer_id BIGINT, amount DOUBLE,
  items INT, event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/redelivered.jsonl', 'format' = 'json');

CREATE TABLE out (event_id VARCHAR, event_type VARCHAR, order_id BIGINT, amount DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

SET 'table.exec.state.ttl' = '1 h';

INSERT INTO out
SELECT event_id, event_type, order_id, amount
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn
  FROM orders
)
WHERE rn = 1;
