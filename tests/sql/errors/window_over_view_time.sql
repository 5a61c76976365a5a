CREATE TABLE orders (
  order_id BIGINT, amount BIGINT, order_time TIMESTAMP(3), paid_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'orders.jsonl', 'format' = 'json');
CREATE VIEW paid AS SELECT order_id, amount, paid_time FROM orders;

SELECT window_start, count(*)
FROM TABLE(TUMBLE(TABLE paid, DESCRIPTOR(paid_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end;
