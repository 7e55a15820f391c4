"""Helpers the tests share: free ports, a Kafka-protocol broker, fresh PostgreSQL databases."""
