-- A temporal join against a versioned view, as Flink's documentation builds
-- one: keep-last deduplication of the rates by currency (an updating
-- query, keyed by currency). An inner join: orders without a rate at their
-- time are dropped, and so are those the residual condition rejects. The
-- batch oracle is temporal_join_versioned_view.oracle.
CREATE TABLE fx_orders (
  order_id BIGINT, currency VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/fx_orders.jsonl', 'format' = 'json');

CREATE TABLE rates (
  currency VARCHAR, rate DOUBLE, update_time TIMESTAMP(3),
  WATERMARK FOR update_time AS update_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/rates.jsonl', 'format' = 'json');

CREATE VIEW versioned_rates AS
SELECT currency, rate, update_time FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY currency ORDER BY update_time DESC) AS rownum
  FROM rates)
WHERE rownum = 1;

CREATE TABLE out (order_id BIGINT, currency VARCHAR, converted DOUBLE, order_time TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT order_id, fx_orders.currency, amount * versioned_rates.rate AS converted, order_time
FROM fx_orders
JOIN versioned_rates FOR SYSTEM_TIME AS OF fx_orders.order_time
ON fx_orders.currency = versioned_rates.currency AND amount * versioned_rates.rate > 100;
