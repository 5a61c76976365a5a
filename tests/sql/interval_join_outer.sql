-- A full outer interval join on a VARCHAR key and an expression, with the
-- comparison form of the interval (strict and not) and a residual: every
-- order and every payment comes out, joined or padded with NULLs when its
-- interval closes.
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE payments (
  order_id BIGINT, customer VARCHAR, paid BIGINT, method VARCHAR, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/payments.jsonl', 'format' = 'json');

CREATE TABLE out (order_id BIGINT, customer VARCHAR, amount BIGINT, paid_for BIGINT, paid BIGINT, method VARCHAR, order_time TIMESTAMP(3), pay_time TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT o.order_id, o.customer, o.amount, p.order_id, p.paid, p.method, o.order_time, p.pay_time
FROM orders o
FULL OUTER JOIN payments p
  ON upper(o.customer) = upper(p.customer)
 AND o.order_id + 0 = p.order_id
 AND p.pay_time > o.order_time - INTERVAL '30' SECOND
 AND o.order_time + INTERVAL '2' MINUTE >= p.pay_time
 AND p.method <> 'wallet';
