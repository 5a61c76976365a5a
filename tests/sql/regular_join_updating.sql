-- A regular join of two updating queries: each customer's order count and
-- total (an updating aggregate) with the customer's latest payment (keep-last
-- deduplication). Both inputs retract and update rows, and the join's
-- changelog follows them; a LEFT join keeps customers without payments.
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE payments (
  order_id BIGINT, customer VARCHAR, paid BIGINT, method VARCHAR, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/payments.jsonl', 'format' = 'json');

CREATE TABLE out (customer VARCHAR, orders BIGINT, total BIGINT, last_paid BIGINT, last_method VARCHAR)
WITH ('connector' = 'print');

INSERT INTO out
SELECT t.customer, t.orders, t.total, l.paid, l.method
FROM (
  SELECT customer, count(*) AS orders, sum(amount) AS total FROM orders GROUP BY customer
) t
LEFT JOIN (
  SELECT customer, paid, method FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY customer ORDER BY pay_time DESC) AS rn FROM payments
  ) WHERE rn = 1
) l ON t.customer = l.customer AND l.paid < t.total;
