-- Prints what examples/kafka_orders.sql committed to revenue-per-minute, and
-- ends (a bounded read up to the topic's current end; only committed records
-- are read: isolation.level is read_committed):
--   headwater run examples/kafka_read.sql

CREATE TABLE revenue_per_minute (
  window_start TIMESTAMP(3), window_end TIMESTAMP(3), payments BIGINT, revenue DOUBLE
) WITH (
  'connector' = 'kafka',
  'topic' = 'revenue-per-minute',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'scan.startup.mode' = 'earliest-offset',
  'scan.bounded.mode' = 'latest-offset',
  'format' = 'json'
);

SELECT window_start, payments, revenue FROM revenue_per_minute;
