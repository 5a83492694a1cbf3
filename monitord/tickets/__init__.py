"""Tickets: the event-sourced ticket desk, one ticket per incident, with its SLA clocks."""
