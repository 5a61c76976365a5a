CREATE TABLE orders (customer VARCHAR, amount BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE totals (customer VARCHAR, total BIGINT)
WITH ('connector' = 'upsert-kafka', 'topic' = 'totals', 'properties.bootstrap.servers' = '127.0.0.1:9',
      'key.format' = 'json', 'value.format' = 'json');
INSERT INTO totals SELECT customer, sum(amount) FROM orders GROUP BY customer;
