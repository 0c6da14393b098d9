"""The shared kit: what every area of npsd stands on and that knows no domain.

Settings, the database and its tables, the error shape, ids and times, input validation, list
parameters, the one lookup of a path key, request plumbing (the request-owned transaction,
idempotency, limits), the durable job queue and the event outbox. It imports nothing else of npsd.
"""
