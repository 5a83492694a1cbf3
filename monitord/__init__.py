"""monitord: equipment monitoring and alerting for buildings.

The daemon's own package: model, clock, config, bus, state table, alert
tracker, ticket desk, store, metrics, app wiring and CLI. Protocol drivers
live in ``drivers``, the rule language in ``rules``, device simulators in
``simulators``; all three depend on this package's model, never on each other.
"""

__version__ = "0.1.0"
