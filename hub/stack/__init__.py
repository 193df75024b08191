"""The local stack: broker, database, fusion worker and API as managed processes."""
