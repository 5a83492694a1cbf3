"""Protocol drivers: they turn devices into ``SampleBatch`` objects on the bus.

``modbus`` is the only module that imports pymodbus, ``mqtt`` the only one that
imports paho, ``bacnet`` bacpypes3 and ``snmp`` pysnmp. A driver never raises
into the bus: a failure becomes quality-marked samples plus a device-health
change.
"""
