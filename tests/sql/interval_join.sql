-- An interval join: each order with its payments made within five minutes
-- after it (Flink's BETWEEN form), with a residual condition on the amounts.
-- Payments before their order, late ones and ones for unknown orders join
-- nothing.
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE payments (
  order_id BIGINT, customer VARCHAR, paid BIGINT, method VARCHAR, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/payments.jsonl', 'format' = 'json');

CREATE TABLE out (order_id BIGINT, customer VARCHAR, amount BIGINT, method VARCHAR, order_time TIMESTAMP(3), pay_time TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT o.order_id, o.customer, o.amount, p.method, o.order_time, p.pay_time
FROM orders o
JOIN payments p
  ON o.order_id = p.order_id
 AND p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '5' MINUTE
WHERE p.paid >= o.amount;
