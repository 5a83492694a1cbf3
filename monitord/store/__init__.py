"""Store: the store protocol, SQLite and InfluxDB backends, the on-disk spool, CSV samples."""
