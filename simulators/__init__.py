"""Device simulators: equipment models served over real Modbus TCP and MQTT.

They read the same device profiles as the drivers, so a profile is exercised
from both ends. Fault scenarios are YAML timelines. Depends on ``monitord``'s
model and profiles only.
"""
