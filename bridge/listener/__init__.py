"""`eventfed listen`: one cloud's Nova notifications from RabbitMQ into the raw Kafka topic."""
