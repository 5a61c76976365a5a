CREATE TABLE orders (
  order_id BIGINT, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'orders.jsonl', 'format' = 'json');
CREATE TABLE payments (
  order_id BIGINT, paid BIGINT, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'payments.jsonl', 'format' = 'json');

SELECT order_id, amount FROM orders WHERE order_id NOT IN (SELECT order_id FROM payments);
