-- A left interval join of the order stream with itself, in Flink's
-- comparison form: each order with the next orders of the same customer
-- within ten seconds. Orders with none keep NULLs.
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE out (order_id BIGINT, customer VARCHAR, next_id BIGINT, next_amount BIGINT)
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT a.order_id, a.customer, b.order_id, b.amount
FROM orders a
LEFT JOIN orders b
  ON a.customer = b.customer
 AND b.order_time > a.order_time
 AND b.order_time <= a.order_time + INTERVAL '10' SECOND;
