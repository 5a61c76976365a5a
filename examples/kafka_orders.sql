-- Order events in from Kafka; per-minute revenue and each order's status out
-- to Kafka, exactly once:
--   headwater run examples/kafka_orders.sql --checkpoint-dir /tmp/kafka-orders
-- (a broker on 127.0.0.1:9092 and the `orders` topic filled by
-- examples/kafka_load.sql: see "Kafka quick start" in the README).
--
-- 1. revenue-per-minute: paid revenue per minute of event time (a topic
--    written in transactions committed with each checkpoint);
-- 2. order-status: per order, how far it got (an upsert topic keyed by
--    order_id: its latest record per key is the order's status);
-- 3. orders-dlq: records that are not order events, as they came, with the
--    error and their topic, partition and offset in headers.

CREATE TABLE orders (
  event_id VARCHAR,
  event_type VARCHAR,
  order_id BIGINT,
  customer_id BIGINT,
  amount DOUBLE,
  event_time TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'properties.group.id' = 'kafka-orders',
  'scan.startup.mode' = 'earliest-offset',
  'scan.watermark.idle-timeout' = '5 s',
  'format' = 'json',
  'decode-error' = 'dlq',
  'decode-error.topic' = 'orders-dlq'
);

CREATE TABLE revenue_per_minute (
  window_start TIMESTAMP(3), window_end TIMESTAMP(3), payments BIGINT, revenue DOUBLE
) WITH (
  'connector' = 'kafka',
  'topic' = 'revenue-per-minute',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'format' = 'json',
  'sink.delivery-guarantee' = 'exactly-once',
  'sink.transactional-id-prefix' = 'kafka-orders-revenue'
);

CREATE TABLE order_status (
  order_id BIGINT,
  stage INT,
  events BIGINT,
  PRIMARY KEY (order_id) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = 'order-status',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'key.format' = 'json',
  'value.format' = 'json',
  'sink.delivery-guarantee' = 'exactly-once',
  'sink.transactional-id-prefix' = 'kafka-orders-status'
);

INSERT INTO revenue_per_minute
SELECT window_start, window_end, count(*), sum(amount)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(event_time), INTERVAL '1' MINUTE))
WHERE event_type = 'payment.processed'
GROUP BY window_start, window_end;

-- The stage an order reached, in lifecycle order: 1 created, 2 paid,
-- 3 inventory reserved, 4 shipped, 5 cancelled.
INSERT INTO order_status
SELECT order_id,
       max(CASE event_type
             WHEN 'order.created' THEN 1
             WHEN 'payment.processed' THEN 2
             WHEN 'inventory.reserved' THEN 3
             WHEN 'order.shipped' THEN 4
             WHEN 'order.cancelled' THEN 5
           END),
       count(*)
FROM orders
GROUP BY order_id;
