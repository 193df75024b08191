"""Kafka plumbing shared by connectors, the API, fusion and the stack (kafka-python)."""
