CREATE TABLE orders (
  order_id BIGINT, currency VARCHAR, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'orders.jsonl', 'format' = 'json');
CREATE TABLE rates (
  currency VARCHAR, rate DOUBLE, update_time TIMESTAMP(3),
  WATERMARK FOR update_time AS update_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'rates.jsonl', 'format' = 'json');

SELECT o.order_id, r.rate
FROM orders AS o
LEFT JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON r.rate > 1;
