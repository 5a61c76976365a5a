-- An IN subquery over two append-only streams is a semi join, and so
-- append-only: each order comes out once, when its first card payment
-- arrives (before or after it), however many there are.
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE payments (
  order_id BIGINT, customer VARCHAR, paid BIGINT, method VARCHAR, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/payments.jsonl', 'format' = 'json');

CREATE TABLE out (order_id BIGINT, customer VARCHAR, amount BIGINT)
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT order_id, customer, amount FROM orders
WHERE customer IN (SELECT customer FROM payments WHERE method = 'card' AND paid > 450)
  AND order_id IN (SELECT order_id - 1 FROM payments);
