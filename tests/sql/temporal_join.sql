-- An event-time temporal join (Flink's FOR SYSTEM_TIME AS OF): each order
-- with the rate of its currency that was current at the order's time, the
-- rate row with the greatest update_time at or before it. A LEFT join keeps
-- orders with no rate yet (or no currency) with NULLs. Each rate row is a
-- new version of its currency. The batch oracle is temporal_join.oracle.
CREATE TABLE fx_orders (
  order_id BIGINT, currency VARCHAR, amount BIGINT, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/fx_orders.jsonl', 'format' = 'json');

CREATE TABLE rates (
  currency VARCHAR, rate DOUBLE, update_time TIMESTAMP(3),
  WATERMARK FOR update_time AS update_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DATA}/rates.jsonl', 'format' = 'json');

CREATE TABLE out (order_id BIGINT, currency VARCHAR, amount BIGINT, rate DOUBLE, order_time TIMESTAMP(3), rate_time TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${OUT}', 'format' = 'json');

INSERT INTO out
SELECT o.order_id, o.currency, o.amount, r.rate, o.order_time, r.update_time AS rate_time
FROM fx_orders AS o
LEFT JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r
ON o.currency = r.currency;
