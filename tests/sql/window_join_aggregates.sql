-- Flink's window join of two window aggregates: each customer's orders and
-- payments per minute, side by side, FULL OUTER (a minute with orders and no
-- payments comes out, and the other way round), keyed by an expression, the
-- window columns renamed on the way.
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE payments (
  order_id BIGINT, customer VARCHAR, paid BIGINT, method VARCHAR, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/payments.jsonl', 'format' = 'json');

CREATE TABLE out (customer VARCHAR, payer VARCHAR, ws TIMESTAMP(3), we TIMESTAMP(3),
                  orders BIGINT, ordered BIGINT, payments BIGINT, paid BIGINT)
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT o.customer, p.customer, o.ws, o.we, o.n, o.total, p.n, p.total
FROM (
  SELECT customer, window_start AS ws, window_end AS we, count(*) AS n, sum(amount) AS total
  FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
  GROUP BY customer, window_start, window_end
) o
FULL JOIN (
  SELECT customer, window_start, window_end, count(*) AS n, sum(paid) AS total
  FROM TABLE(TUMBLE(TABLE payments, DESCRIPTOR(pay_time), INTERVAL '1' MINUTE))
  GROUP BY customer, window_start, window_end
) p
  ON upper(o.customer) = upper(p.customer) AND o.ws = p.window_start AND o.we = p.window_end;
