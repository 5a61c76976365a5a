-- An online shop's order events, kept as three materialized views that any
-- Postgres client can read while the job runs:
--
--   headwater run examples/orders.sql
--   psql -h 127.0.0.1 -p 6878 -c "SELECT * FROM customer_stats ORDER BY spent DESC LIMIT 5"
--   headwater query "SELECT * FROM order_status WHERE order_id = 42"
--
-- The `orders` generator runs until stopped (Ctrl-C): orders are created,
-- paid, reserved, shipped or cancelled, out of order by up to 2 s, and 1% of
-- the events are delivered twice.

CREATE TABLE orders (
  event_id    VARCHAR,
  event_type  VARCHAR,
  order_id    BIGINT,
  customer_id BIGINT,
  amount      DOUBLE,
  items       INT,
  event_time  TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH (
  'connector' = 'orders',
  'events-per-second' = '2000',
  'duplicate-rate' = '0.01'
);

-- Event ids are remembered for a day: a redelivery later than that would count again.
SET 'table.exec.state.ttl' = '1 d';

-- The latest status of each order. Every view reads the events once each:
-- ROW_NUMBER() .. WHERE rn = 1 keeps the first delivery of each event_id
-- (Flink's deduplication query), so a redelivered event is not counted twice.
CREATE MATERIALIZED VIEW order_status AS
SELECT order_id,
       customer_id,
       last_value(event_type ORDER BY event_time) AS status,
       max(event_time) AS updated_at,
       count(*) AS events
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn
  FROM orders
) WHERE rn = 1
GROUP BY order_id, customer_id;

-- Paid amount per minute of event time (the current minute keeps growing).
CREATE MATERIALIZED VIEW revenue_per_minute AS
SELECT date_bin(INTERVAL '1' MINUTE, event_time) AS minute,
       count(*) AS payments,
       sum(CAST(amount AS DECIMAL(18, 2))) AS revenue
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn
  FROM orders
) WHERE rn = 1 AND event_type = 'payment.processed'
GROUP BY date_bin(INTERVAL '1' MINUTE, event_time);

-- Orders placed and money paid, per customer.
CREATE MATERIALIZED VIEW customer_stats AS
SELECT customer_id,
       count(*) FILTER (WHERE event_type = 'order.created') AS orders,
       sum(CAST(amount AS DECIMAL(18, 2))) FILTER (WHERE event_type = 'payment.processed') AS spent,
       max(event_time) AS last_seen
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn
  FROM orders
) WHERE rn = 1
GROUP BY customer_id;
