"""People: roster and on-call, dispatch and escalation, the notification outbox and channels."""
