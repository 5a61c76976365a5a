CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafkaa');
INSERT INTO t SELECT 1;
