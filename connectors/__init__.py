"""Thin adapters at the edges: Kafka (producer SDK, topics, dead letters), Redis (views),
ClickHouse (sink and reads), and the embedded runtime that starts local services."""
