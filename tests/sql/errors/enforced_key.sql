CREATE TABLE totals (customer VARCHAR, total BIGINT, PRIMARY KEY (customer))
WITH ('connector' = 'upsert-kafka', 'topic' = 'totals', 'properties.bootstrap.servers' = '127.0.0.1:9',
      'key.format' = 'json', 'value.format' = 'json');
