-- A regular join (no time bounds): each payment with its order, however far
-- apart in time, with a residual condition. Both inputs are append-only, so
-- the inner join is too. Every row stays in state (no 'table.exec.state.ttl').
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE payments (
  order_id BIGINT, customer VARCHAR, paid BIGINT, method VARCHAR, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/payments.jsonl', 'format' = 'json');

CREATE TABLE out (order_id BIGINT, customer VARCHAR, amount BIGINT, paid BIGINT, method VARCHAR, order_time TIMESTAMP(3), pay_time TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT o.order_id, o.customer, o.amount, p.paid, p.method, o.order_time, p.pay_time
FROM payments p
JOIN orders o ON p.order_id = o.order_id AND p.customer = o.customer
WHERE p.paid < o.amount OR p.pay_time < o.order_time;
