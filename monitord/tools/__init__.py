"""Tools: the command line, demo, replay, rule explanation, rule tests and reports."""
