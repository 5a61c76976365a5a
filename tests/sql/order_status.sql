-- The demo's order_status over deduplicated events: the latest status of
-- each order (last_value ordered by event time, though events arrive out of
-- order), and how many distinct events it had.
CREATE TABLE orders (
  event_id VARCHAR, event_type VARCHAR, order_id BIGINT, customer_id BIGINT, amount DOUBLE,
  items INT, event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/redelivered.jsonl', 'format' = 'json');

CREATE TABLE out (order_id BIGINT, status VARCHAR, updated_at TIMESTAMP(3), events BIGINT)
WITH ('connector' = 'print');

INSERT INTO out
SELECT order_id, last_value(event_type ORDER BY event_time), max(event_time), count(*)
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn
  FROM orders
)
WHERE rn = 1
GROUP BY order_id;
