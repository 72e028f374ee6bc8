"""Durable metadata shared by the services."""
