-- Reads the upsert topic that examples/kafka_orders.sql writes (order-status:
-- each order's latest stage, keyed by order_id) as a table, and keeps the
-- shipped and cancelled orders in a view that psql, HTTP and
-- `headwater query` can read while it runs:
--   headwater run examples/kafka_status.sql
--   headwater query "SELECT stage, count(*) FROM finished_orders GROUP BY stage"

CREATE TABLE order_status (
  order_id BIGINT,
  stage INT,
  events BIGINT,
  written TIMESTAMP_LTZ(3) METADATA FROM 'timestamp',
  PRIMARY KEY (order_id) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = 'order-status',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'key.format' = 'json',
  'value.format' = 'json'
);

-- 4 shipped, 5 cancelled: an order that reaches them joins the view; a key's
-- later record updates its row.
CREATE MATERIALIZED VIEW finished_orders AS
SELECT order_id, stage, events, written FROM order_status WHERE stage >= 4;
