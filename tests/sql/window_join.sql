-- A window join, as Flink's: orders and payments cut into the same hopping
-- windows (Flink's TABLE(HOP(..)) form), joined per order and window, with a
-- residual. A LEFT join: an order without a payment in a window comes out
-- alone when the window closes. A row is in two windows, so it joins twice.
CREATE TABLE orders (
  order_id BIGINT, customer VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/orders.jsonl', 'format' = 'json');

CREATE TABLE payments (
  order_id BIGINT, customer VARCHAR, paid BIGINT, method VARCHAR, pay_time TIMESTAMP(3),
  WATERMARK FOR pay_time AS pay_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/payments.jsonl', 'format' = 'json');

CREATE TABLE out (order_id BIGINT, customer VARCHAR, amount BIGINT, paid BIGINT, method VARCHAR,
                  window_start TIMESTAMP(3), window_end TIMESTAMP(3), pay_window_end TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT L.order_id, L.customer, L.amount, R.paid, R.method, L.window_start, L.window_end, R.window_end
FROM (SELECT * FROM TABLE(HOP(TABLE orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))) L
LEFT JOIN (SELECT * FROM TABLE(HOP(TABLE payments, DESCRIPTOR(pay_time), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))) R
  ON L.order_id = R.order_id
 AND L.window_start = R.window_start AND L.window_end = R.window_end
 AND R.method <> 'wallet';
