-- IN and EXISTS subqueries become semi joins, NOT EXISTS an anti join (as
-- Flink plans them), over two append-only streams: the orders that have a
-- payment of at least their amount, UNION ALL the orders of customers with
-- no card payment of that order id. An order that a later payment matches
-- is retracted from the anti join then (-D); the result is the folded
-- changelog.
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE payments (
  order_id BIGINT, customer VARCHAR, paid BIGINT, method VARCHAR, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/payments.jsonl', 'format' = 'json');

CREATE TABLE out (kind VARCHAR, order_id BIGINT, customer VARCHAR, amount BIGINT)
WITH ('connector' = 'print');

INSERT INTO out
SELECT 'paid', order_id, customer, amount FROM orders o
WHERE o.order_id IN (SELECT order_id FROM payments)
  AND EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.order_id AND p.paid >= o.amount)
UNION ALL
SELECT 'no card', order_id, customer, amount FROM orders o
WHERE NOT EXISTS (
  SELECT 1 FROM payments p
  WHERE p.order_id = o.order_id AND p.customer = o.customer AND p.method = 'card');
