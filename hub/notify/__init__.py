"""The notifier: the picture's changes delivered to webhook subscriptions (``hub notify run``).

A process of its own beside the API and fusion: a receiver that hangs slows neither fusion nor
the API nor the other subscriptions.
"""
