-- Order metrics from the `orders` generator (an online shop's order events),
-- run with:  headwater run examples/order_metrics.sql
--
-- 1. paid revenue per minute of event time, to out/revenue/ (exactly-once
--    with --checkpoint-dir);
-- 2. per customer, the orders placed so far: an updating aggregate, printed
--    as changes (+I, -U, +U).

CREATE TABLE orders (
  event_id VARCHAR,
  event_type VARCHAR,
  order_id BIGINT,
  customer_id BIGINT,
  amount DOUBLE,
  event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH (
  'connector' = 'orders',
  'number-of-orders' = '5000',
  'events-per-second' = '5000'
);

CREATE TABLE revenue (window_start TIMESTAMP(3), window_end TIMESTAMP(3), payments BIGINT, revenue DECIMAL(18, 2))
WITH ('connector' = 'filesystem', 'path' = 'out/revenue', 'format' = 'json');

CREATE TABLE orders_per_customer (customer_id BIGINT, orders BIGINT)
WITH ('connector' = 'print');

INSERT INTO revenue
SELECT window_start, window_end, count(*), sum(CAST(amount AS DECIMAL(18, 2)))
FROM TUMBLE(orders, event_time, INTERVAL '1' MINUTE)
WHERE event_type = 'payment.processed'
GROUP BY window_start, window_end;

INSERT INTO orders_per_customer
SELECT customer_id, count(*)
FROM orders
WHERE event_type = 'order.created' AND customer_id < 5
GROUP BY customer_id;

EXPLAIN
INSERT INTO revenue
SELECT window_start, window_end, count(*), sum(CAST(amount AS DECIMAL(18, 2)))
FROM TUMBLE(orders, event_time, INTERVAL '1' MINUTE)
WHERE event_type = 'payment.processed'
GROUP BY window_start, window_end;
