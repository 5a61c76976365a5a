-- A full outer regular join, on a VARCHAR key and an expression: an updating
-- query. A row that matches nothing comes out padded with NULLs (+I), and
-- is retracted (-D) when its first match arrives; the result is the folded
-- changelog.
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE payments (
  order_id BIGINT, customer VARCHAR, paid BIGINT, method VARCHAR, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/payments.jsonl', 'format' = 'json');

CREATE TABLE out (order_id BIGINT, customer VARCHAR, amount BIGINT, payment BIGINT, method VARCHAR, paid BIGINT)
WITH ('connector' = 'print');

INSERT INTO out
SELECT o.order_id, o.customer, o.amount, p.order_id, p.method, p.paid
FROM orders o
FULL OUTER JOIN payments p
  ON o.customer = p.customer AND o.order_id + 1 = p.order_id
 AND p.paid > 150;
