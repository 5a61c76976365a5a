-- A GROUP BY expression (date_bin) in an updating aggregate, over
-- deduplicated payments: paid amount per minute of event time.
CREATE TABLE orders (
  event_id VARCHAR, event_type VARCHAR, order_id BIGINT, customer_id BIGINT, amount DOUBLE,
  items INT, event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/redelivered.jsonl', 'format' = 'json');

CREATE TABLE out (minute TIMESTAMP(3), payments BIGINT, revenue DECIMAL(18, 2))
WITH ('connector' = 'print');

INSERT INTO out
SELECT date_bin(INTERVAL '10' SECOND, event_time) AS minute, count(*), sum(CAST(amount AS DECIMAL(18, 2)))
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn
  FROM orders
)
WHERE rn = 1 AND event_type = 'payment.processed'
GROUP BY date_bin(INTERVAL '10' SECOND, event_time);
