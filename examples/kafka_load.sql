-- Fills topic `orders` with order events from the generator, keyed by order:
--   headwater run examples/kafka_load.sql
-- (a broker on 127.0.0.1:9092: see "Kafka quick start" in the README).

CREATE TABLE generated (
  event_id VARCHAR, event_type VARCHAR, order_id BIGINT, customer_id BIGINT,
  amount DOUBLE, items INT, event_time TIMESTAMP(3)
) WITH ('connector' = 'orders', 'number-of-orders' = '20000', 'seed' = '7');

CREATE TABLE orders (
  event_id VARCHAR, event_type VARCHAR, order_id BIGINT, customer_id BIGINT,
  amount DOUBLE, event_time TIMESTAMP(3)
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'format' = 'json',
  'key.fields' = 'order_id'
);

INSERT INTO orders
SELECT event_id, event_type, order_id, customer_id, amount, event_time FROM generated;
