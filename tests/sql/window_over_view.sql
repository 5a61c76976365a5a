-- Windows over a view: redelivered events deduplicated (keep-first) in a
-- view, then counted per 10 s (a tumbling window aggregate) and, in the
-- same INSERT (UNION ALL), joined per window to the same customer's other big orders (a
-- window join of two views).
CREATE TABLE orders (
  event_id VARCHAR, event_type VARCHAR, order_id BIGINT, customer_id BIGINT, amount DOUBLE,
  items INT, event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/redelivered.jsonl', 'format' = 'json');

CREATE VIEW unique_orders AS
SELECT event_id, customer_id, amount, event_time
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn FROM orders)
WHERE rn = 1;

CREATE VIEW big_orders AS
SELECT event_id AS big_id, customer_id AS big_customer, amount AS big_amount, event_time
FROM unique_orders WHERE amount > 100;

CREATE TABLE out (window_start TIMESTAMP(3), window_end TIMESTAMP(3), customer_id BIGINT, events BIGINT, top DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT window_start, window_end, customer_id, count(*), max(amount)
FROM TABLE(TUMBLE(TABLE unique_orders, DESCRIPTOR(event_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, customer_id
UNION ALL
SELECT a.window_start, a.window_end, a.customer_id, CAST(NULL AS BIGINT), b.big_amount
FROM TABLE(TUMBLE(TABLE unique_orders, DESCRIPTOR(event_time), INTERVAL '10' SECOND)) a
JOIN TABLE(TUMBLE(TABLE big_orders, DESCRIPTOR(event_time), INTERVAL '10' SECOND)) b
  ON a.customer_id = b.big_customer
 AND a.window_start = b.window_start AND a.window_end = b.window_end
 AND a.event_id <> b.big_id;
