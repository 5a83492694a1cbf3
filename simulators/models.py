"""Equipment models: plausible behaviour over time, and faults on demand.

Each model keeps its point values in ``values`` (the names the profiles use)
and moves them forward in ``step``. A fault changes the physics, not just one
number: a dry-running pump loses suction, flow and then discharge pressure;
a trapped car stops between floors with its door shut and someone inside.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterable

from monitord.core.assets import Asset


class Equipment:
    """Base: values by point name, active faults, a seeded random source."""

    FAULTS: frozenset[str] = frozenset({"offline", "silent"})

    def __init__(self, asset: str, seed: int | None = None) -> None:
        self.asset = asset
        self.values: dict[str, float] = {}
        self.faults: set[str] = set()
        # crc32, not hash(): str hashes change per process (PYTHONHASHSEED), and a fault run must
        # produce the same noise in every process to be reproducible.
        self.rng = random.Random(seed if seed is not None else zlib.crc32(asset.encode()))

    @classmethod
    def for_asset(cls, asset: str, params: dict[str, float]) -> Equipment:
        """The model of one asset, given its device facts (profile params, then the asset's)."""
        return cls(asset)

    def step(self, t: float, dt: float) -> None:
        raise NotImplementedError

    def noise(self, scale: float) -> float:
        return self.rng.gauss(0.0, scale)

    @classmethod
    def knows(cls, fault: str) -> bool:
        return fault in cls.FAULTS or fault in Equipment.FAULTS


def daily_load(t: float) -> float:
    """0..1 building load over a day: low at night, peaks late morning and evening."""
    hour = (t / 3600.0) % 24
    return 0.25 + 0.45 * math.exp(-((hour - 10.5) ** 2) / 8) + 0.35 * math.exp(-((hour - 19) ** 2) / 6)


class Elevator(Equipment):
    """A car serving floors with door cycles; reports GB/T 24476 status fields."""

    FAULTS = frozenset(
        {
            "entrapment",
            "entrapment_landing",
            "power_cut",
            "safety_circuit",
            "overspeed",
            "door_open_running",
            "moving_door_open",
            "overtravel_top",
            "overtravel_bottom",
            "stopped_out_of_zone",
            "door_lock",
            "door_wont_open",
            "door_wont_close",
            "stuck_button",
            "heartbeat_stuck",
            "abnormal_speed",
        }
    )
    FLOOR_HEIGHT = 3.0

    def __init__(self, asset: str, floors: int = 20, rated_speed: float = 1.75, seed: int | None = None):
        super().__init__(asset, seed)
        self.floors, self.rated = floors, rated_speed
        self.position = 0.0  # metres above floor 1
        self.target = 0
        self.phase = "idle"
        self.phase_left = 2.0
        self.heartbeat = 0
        self.values.update(
            run_status=0,
            direction=0,
            leveling=0,
            door=0,
            occupancy=0,
            power_source=0,
            inspection=0,
            safety_circuit=1,
            floor=1,
            speed=0.0,
            fault_code=0,
            heartbeat=0,
            upper_limit=0,
            lower_limit=0,
            door_lock_circuit=1,
            door_command=0,
            landing_button_held=0,
        )

    def step(self, t: float, dt: float) -> None:
        v = self.values
        if "heartbeat_stuck" not in self.faults:
            self.heartbeat = (self.heartbeat + 1) % 65536
        v["heartbeat"] = self.heartbeat
        v["power_source"] = 1 if "power_cut" in self.faults else 0
        v["safety_circuit"] = 0 if "safety_circuit" in self.faults else 1
        v["door_lock_circuit"] = 0 if "door_lock" in self.faults else 1
        v["landing_button_held"] = 1 if "stuck_button" in self.faults else 0
        if self._abnormal(v):
            return
        if "entrapment" in self.faults or "entrapment_landing" in self.faults:
            if "entrapment" in self.faults:
                if self.position % self.FLOOR_HEIGHT < 0.5:
                    self.position += 1.2  # stop between two landings
                # Out of the door zone the controller drops any open command and, once the car is
                # freed, starts over from idle: which door phase the fault happened to interrupt
                # must not decide whether a door fault follows (it did, at random, in the demo).
                v["door_command"] = 0
                self.phase, self.phase_left = "idle", 2.0
            elif "entrapment_landing" in self.faults:
                self.position = round(self.position / self.FLOOR_HEIGHT) * self.FLOOR_HEIGHT
            v.update(
                speed=0.0,
                direction=0,
                door=0,
                occupancy=1,
                run_status=3 if "entrapment" in self.faults else 2,
                fault_code=8 if "entrapment" in self.faults else 7,
            )
            self._level()
            return
        if v["safety_circuit"] == 0 or v["power_source"] == 1:
            v.update(speed=0.0, direction=0, run_status=1, fault_code=10 if v["safety_circuit"] == 0 else 9)
            self._level()
            return
        v["run_status"], v["fault_code"] = 0, 0
        self.phase_left -= dt
        if self.phase == "moving":
            goal = self.target * self.FLOOR_HEIGHT
            step = min(self.rated * dt, abs(goal - self.position))
            self.position += math.copysign(step, goal - self.position)
            speed = self.rated * (1.3 if "overspeed" in self.faults else 1.0)
            v.update(speed=round(speed + self.noise(0.01), 3), direction=1 if goal > self.position else 2)
            v["door"] = 3 if "door_open_running" in self.faults else 0
            if abs(goal - self.position) < 1e-6:
                self.phase, self.phase_left = "opening", 2.0
                v.update(speed=0.0, direction=0, door=3, door_command=1)
        elif self.phase == "opening" and self.phase_left <= 0:
            self.phase, self.phase_left = "open", 4.0
            v["door"], v["door_command"] = 1, 0
            v["occupancy"] = 1 if self.rng.random() < 0.6 else 0
        elif self.phase == "open" and self.phase_left <= 0:
            self.phase, self.phase_left = "closing", 2.0
            v["door"], v["door_command"] = 2, 2
        elif self.phase == "closing" and self.phase_left <= 0:
            self.phase, self.phase_left = "idle", self.rng.uniform(1.0, 8.0)
            v["door"], v["door_command"] = 0, 0
        elif self.phase == "idle" and self.phase_left <= 0:
            current = round(self.position / self.FLOOR_HEIGHT)
            self.target = self.rng.choice([f for f in range(self.floors) if f != current])
            self.phase = "moving"
        self._level()

    def _abnormal(self, v: dict[str, float]) -> bool:
        """Faults that take the car out of its normal cycle; True when one did."""
        top = (self.floors - 1) * self.FLOOR_HEIGHT
        if "overtravel_top" in self.faults or "overtravel_bottom" in self.faults:
            up = "overtravel_top" in self.faults
            self.position = top + 0.4 if up else -0.4
            v.update(
                speed=0.3,
                direction=1 if up else 2,
                upper_limit=int(up),
                lower_limit=int(not up),
                run_status=1,
                fault_code=1 if up else 2,
                door=0,
            )
            v["floor"] = self.floors if up else 1
            return True
        if "moving_door_open" in self.faults:
            self.position = min(top, self.position + 0.06)
            v.update(speed=0.3, direction=1, door=1, run_status=1, fault_code=5)
        elif "stopped_out_of_zone" in self.faults:
            if self.position % self.FLOOR_HEIGHT < 0.5:
                self.position += 1.2
            v.update(speed=0.0, direction=0, door=0, occupancy=0, run_status=1, fault_code=6)
        elif "abnormal_speed" in self.faults:
            v.update(speed=0.6, direction=0, run_status=1, fault_code=15)
        elif "door_wont_open" in self.faults:
            v.update(speed=0.0, direction=0, door=0, door_command=1, run_status=1, fault_code=11)
        elif "door_wont_close" in self.faults:
            v.update(speed=0.0, direction=0, door=1, door_command=2, run_status=1, fault_code=12)
        else:
            v["upper_limit"] = v["lower_limit"] = 0
            return False
        self._level()
        return True

    def _level(self) -> None:
        off = self.position % self.FLOOR_HEIGHT
        in_zone = min(off, self.FLOOR_HEIGHT - off) < 0.1
        self.values["leveling"] = 0 if in_zone else 1
        self.values["floor"] = 1 + round(self.position / self.FLOOR_HEIGHT)


class PumpSet(Equipment):
    """A booster set holding discharge pressure against demand with a VFD."""

    FAULTS = frozenset({"dry_run", "vfd_fault", "sump_high", "supply_undervoltage", "short_cycling"})

    def __init__(self, asset: str, setpoint: float = 0.60, seed: int | None = None):
        super().__init__(asset, seed)
        self.setpoint = setpoint
        self.freq = 35.0
        self.starts = 0
        self.values.update(
            running=1,
            suction_pressure=0.15,
            discharge_pressure=setpoint,
            flow=20.0,
            frequency=35.0,
            power_kw=5.5,
            starts=0,
            vfd_fault_code=0,
            sump_level_high=0,
            supply_voltage=380.0,
            pressure_setpoint=setpoint,
        )

    def step(self, t: float, dt: float) -> None:
        v = self.values
        demand = 30.0 * daily_load(t)
        v["supply_voltage"] = (320.0 if "supply_undervoltage" in self.faults else 380.0) + self.noise(1.0)
        v["sump_level_high"] = 1 if "sump_high" in self.faults else 0
        if "vfd_fault" in self.faults:
            v.update(
                running=0,
                frequency=0.0,
                flow=0.0,
                power_kw=0.0,
                vfd_fault_code=0x2310,
                discharge_pressure=max(0.15, v["discharge_pressure"] - 0.05 * dt),
            )
            return
        v["vfd_fault_code"] = 0
        if "short_cycling" in self.faults and int(t) % 60 == 0 and v["running"]:
            v["running"] = 0
        elif not v["running"]:
            v["running"] = 1
            self.starts += 1
        v["starts"] = self.starts
        if "dry_run" in self.faults:
            v["suction_pressure"] = max(0.005, v["suction_pressure"] - 0.05 * dt) + abs(self.noise(0.002))
            v["flow"] = max(0.0, v["flow"] - 10 * dt)
            v["discharge_pressure"] = max(0.05, v["discharge_pressure"] - 0.1 * dt)
            self.freq = min(50.0, self.freq + 5 * dt)  # the controller pushes harder, in vain
        else:
            v["suction_pressure"] = 0.15 + self.noise(0.003)
            error = self.setpoint - v["discharge_pressure"]
            self.freq = min(50.0, max(20.0, self.freq + 40.0 * error * dt))
            head = 0.15 + 0.55 * (self.freq / 50.0) ** 2 - 0.004 * demand
            v["discharge_pressure"] += (head - v["discharge_pressure"]) * min(1.0, 2 * dt)
            v["discharge_pressure"] += self.noise(0.002)
            v["flow"] = max(0.0, demand + self.noise(0.3))
        v["frequency"] = round(self.freq, 2)
        v["power_kw"] = round(7.5 * (self.freq / 50.0) ** 3, 3)


class AirHandler(Equipment):
    """An AHU tracking its supply-air setpoint with cooling/heating valves."""

    FAULTS = frozenset(
        {"filter_clogged", "cooling_valve_stuck", "fan_failure", "fan_saturated", "mat_sensor_high"}
    )

    def __init__(self, asset: str, seed: int | None = None):
        super().__init__(asset, seed)
        self.values.update(
            fan_status=1,
            fan_speed=70.0,
            supply_air_temp=13.0,
            supply_air_setpoint=13.0,
            mixed_air_temp=22.0,
            return_air_temp=24.0,
            outdoor_air_temp=30.0,
            cooling_valve=40.0,
            heating_valve=0.0,
            filter_dp=120.0,
            duct_static=250.0,
            duct_static_setpoint=250.0,
            oa_damper=20.0,
            operating_state=4,  # G36: 1 heating, 2 economiser, 3 economiser + cooling, 4 cooling
        )

    def step(self, t: float, dt: float) -> None:
        v = self.values
        hour = (t / 3600.0) % 24
        v["outdoor_air_temp"] = 26 + 6 * math.sin((hour - 9) / 24 * 2 * math.pi) + self.noise(0.05)
        v["return_air_temp"] = 24 + self.noise(0.05)
        oa = v["oa_damper"] / 100
        v["mixed_air_temp"] = oa * v["outdoor_air_temp"] + (1 - oa) * v["return_air_temp"]
        if "mat_sensor_high" in self.faults:
            v["mixed_air_temp"] += 6.0  # a drifted sensor: above both return and outdoor air (G36 FC3)
        if "fan_failure" in self.faults:
            v.update(fan_status=0, fan_speed=0.0, duct_static=0.0)
            return
        v["fan_status"] = 1
        clog = 330.0 if "filter_clogged" in self.faults else 0.0
        v["filter_dp"] += ((120.0 + clog) - v["filter_dp"]) * min(1.0, 0.5 * dt)
        error = v["supply_air_temp"] - v["supply_air_setpoint"]
        if "cooling_valve_stuck" not in self.faults:
            v["cooling_valve"] = min(100.0, max(0.0, v["cooling_valve"] + 8.0 * error * dt))
        else:
            v["cooling_valve"] = 100.0
        cooling = v["cooling_valve"] / 100 * 16.0
        stuck_gain = 0.35 if "cooling_valve_stuck" in self.faults else 1.0
        target = v["mixed_air_temp"] + 1.0 - cooling * stuck_gain
        v["supply_air_temp"] += (target - v["supply_air_temp"]) * min(1.0, 0.5 * dt) + self.noise(0.02)
        if "fan_saturated" in self.faults:  # a torn duct or stuck damper: full speed, low static (G36 FC1)
            v["fan_speed"] = 100.0
            v["duct_static"] = v["duct_static_setpoint"] - 80.0 + self.noise(3.0)
        else:
            v["duct_static"] = v["duct_static_setpoint"] + self.noise(3.0)
            v["fan_speed"] = 70.0 + self.noise(0.5)


class PowerMeter(Equipment):
    """A meter on a feeder following the building's daily load: three-phase, or one phase (L1)."""

    FAULTS = frozenset(
        {
            "voltage_sag",
            "outage",
            "unbalance",
            "low_power_factor",
            "overcurrent",
            "residual_leak",
            "cable_overheat",
            "frequency_drift",
            "night_waste",
        }
    )

    def __init__(
        self,
        asset: str,
        nominal: float = 220.0,
        peak_kw: float = 50.0,
        seed: int | None = None,
        phases: int = 3,
    ):
        super().__init__(asset, seed)
        self.nominal, self.peak_kw, self.phases = nominal, peak_kw, phases
        self.energy = 100_000.0
        self.reactive_energy = 30_000.0
        self.step(0.0, 0.0)

    @classmethod
    def for_asset(cls, asset: str, params: dict[str, float]) -> Equipment:
        if params.get("phases") == 1:  # a single-phase meter (SDM120): a flat's or a plant room's circuit
            return cls(asset, peak_kw=7.0, phases=1)
        return cls(asset)

    def step(self, t: float, dt: float) -> None:
        v = self.values
        out = "outage" in self.faults
        pf = 0.78 if "low_power_factor" in self.faults else 0.95
        load_kw = (
            0.0 if out else self.peak_kw * daily_load(t) * (1.8 if "overcurrent" in self.faults else 1.0)
        )
        if "night_waste" in self.faults and not out:
            load_kw += 0.5 * self.peak_kw  # lights and pumps left running all night (跑冒滴漏)
        for i, ph in enumerate(("l1", "l2", "l3")):
            u = 0.0 if out or (self.phases == 1 and ph != "l1") else self.nominal * (1 + self.noise(0.003))
            if ph == "l1" and "voltage_sag" in self.faults:
                u *= 0.82
            share = (1.35 if ph == "l1" else 0.82) if "unbalance" in self.faults else 1.0
            if self.phases == 1:
                share = 3.0 if ph == "l1" else 0.0  # the whole load on the one phase
            p = load_kw * 1000 / 3 * share
            i_a = p / (u * pf) if u > 1 else 0.0
            v[f"voltage_{ph}"] = round(u, 2)
            v[f"current_{ph}"] = round(i_a, 3)
            v[f"active_power_{ph}"] = round(p, 1)
            v[f"power_factor_{ph}"] = pf if not out else 0.0
            v[f"apparent_power_{ph}"] = round(p / pf, 1) if not out else 0.0
            v[f"reactive_power_{ph}"] = (
                round(math.sqrt(max(0.0, (p / pf) ** 2 - p**2)), 1) if not out else 0.0
            )
            v[f"thd_voltage_{ph}"] = 0.0 if out else round(2.1 + self.noise(0.05), 2)
            v[f"thd_current_{ph}"] = 0.0 if out else round(8.0 + self.noise(0.2), 2)
            nxt = ("l2", "l3", "l1")[i]
            v[f"voltage_{ph}_{nxt}"] = round(u * math.sqrt(3), 2)
        v["active_power_total"] = round(sum(v[f"active_power_{p}"] for p in ("l1", "l2", "l3")), 1)
        v["power_factor_total"] = pf if not out else 0.0
        drift = -0.5 if "frequency_drift" in self.faults else 0.0
        v["frequency"] = 0.0 if out else round(50.0 + drift + self.noise(0.01), 3)
        v["current_neutral"] = round(abs(v["current_l1"] - v["current_l2"]) * 0.5, 3)
        self.energy += load_kw * dt / 3600.0
        v["import_energy_kwh"] = round(self.energy, 2)
        v["total_energy_kwh"] = v["import_energy_kwh"]
        phases = ("l1", "l2", "l3")
        v["voltage_avg"] = round(sum(v[f"voltage_{p}"] for p in phases) / 3, 2)
        v["current_sum"] = round(sum(v[f"current_{p}"] for p in phases), 3)
        v["current_avg"] = round(v["current_sum"] / 3, 3)
        v["apparent_power_total"] = round(sum(v[f"apparent_power_{p}"] for p in phases), 1)
        v["reactive_power_total"] = round(sum(v[f"reactive_power_{p}"] for p in phases), 1)
        self.reactive_energy += v["reactive_power_total"] / 1000 * dt / 3600.0
        # a building's incomer imports only: export registers read 0, as on a real consumer meter
        v["export_energy_kwh"] = v["export_reactive_kvarh"] = 0.0
        v["import_reactive_kvarh"] = v["total_reactive_kvarh"] = round(self.reactive_energy, 2)
        # electrical-fire monitoring channels (residual current, conductor temperatures)
        v["residual_current"] = (450.0 if "residual_leak" in self.faults else 120.0) + self.noise(5.0)
        for ph in phases:
            hot = 40.0 if ("cable_overheat" in self.faults and ph == "l2") else 0.0
            v[f"cable_temp_{ph}"] = 30.0 + 25.0 * (load_kw / self.peak_kw) ** 2 + hot + self.noise(0.2)


MODELS: dict[str, type[Equipment]] = {
    "elevator": Elevator,
    "pump": PumpSet,
    "ahu": AirHandler,
    "power_meter": PowerMeter,
}


class Chiller(Equipment):
    """A screw chiller holding chilled-water supply temperature."""

    FAULTS = frozenset({"high_refrigerant_dp", "high_discharge_temp", "short_cycling"})

    def __init__(self, asset: str, seed: int | None = None):
        super().__init__(asset, seed)
        self.values.update(
            compressor_running=1,
            refrigerant_dp=700.0,
            discharge_temp=65.0,
            chilled_water_supply=7.0,
            chilled_water_return=12.0,
        )

    def step(self, t: float, dt: float) -> None:
        v = self.values
        v["refrigerant_dp"] = (1150.0 if "high_refrigerant_dp" in self.faults else 700.0) + self.noise(5.0)
        v["discharge_temp"] = (92.0 if "high_discharge_temp" in self.faults else 65.0) + self.noise(0.3)
        if "short_cycling" in self.faults:
            v["compressor_running"] = 1 if int(t) % 60 < 30 else 0
        else:
            v["compressor_running"] = 1
        v["chilled_water_supply"] = 7.0 + self.noise(0.05)
        v["chilled_water_return"] = 12.0 + 3 * daily_load(t) + self.noise(0.05)


MODELS["chiller"] = Chiller


class Ups(Equipment):
    """An online double-conversion UPS reporting the RFC 1628 UPS-MIB values.

    ``on_battery``: mains lost, output from the battery, charge draining; ``low_battery``: the
    battery reports low (RFC 1628 batteryLow) with a few minutes left; ``overload``: output load
    above 100 %; ``on_bypass``: output straight from mains, unprotected; ``battery_failed``: on mains,
    but the battery could not carry the load (RFC 1628 batteryDepleted).
    """

    FAULTS = frozenset({"on_battery", "low_battery", "overload", "on_bypass", "battery_failed"})

    def __init__(self, asset: str, nominal: float = 220.0, seed: int | None = None):
        super().__init__(asset, seed)
        self.nominal = nominal
        self.on_battery_for = 0.0
        self.values.update(
            battery_status=2,
            seconds_on_battery=0,
            minutes_remaining=45,
            charge_remaining=100,
            battery_temperature=25,
            input_voltage=nominal,
            input_frequency=50.0,
            output_source=3,
            output_voltage=nominal,
            output_load=45,
        )

    def step(self, t: float, dt: float) -> None:
        v, f = self.values, self.faults
        battery = "on_battery" in f or "low_battery" in f
        self.on_battery_for = self.on_battery_for + dt if battery else 0.0
        v["input_voltage"] = 0 if battery else round(self.nominal + self.noise(1.5))
        v["input_frequency"] = 0.0 if battery else round(50.0 + self.noise(0.02), 1)
        v["output_source"] = 5 if battery else 4 if "on_bypass" in f else 3
        v["seconds_on_battery"] = int(self.on_battery_for)
        v["output_load"] = 115 if "overload" in f else round(35 + 20 * daily_load(t))
        if "low_battery" in f:
            v["battery_status"], v["charge_remaining"], v["minutes_remaining"] = 3, 12, 3
        elif "battery_failed" in f:
            v["battery_status"], v["charge_remaining"], v["minutes_remaining"] = 4, 0, 0
        else:
            charge = max(20.0, 100.0 - self.on_battery_for / 30)  # ~1 % per 30 s at typical load
            v["battery_status"], v["charge_remaining"] = 2, round(charge)
            v["minutes_remaining"] = round(45 * charge / 100)
        v["output_voltage"] = round(self.nominal + self.noise(0.5))
        v["battery_temperature"] = round(25 + self.noise(0.3))


MODELS["ups"] = Ups


class Drive(Equipment):
    """A variable-speed drive (Danfoss FC 102 map) on a fan or pump following the building's load."""

    FAULTS = frozenset({"overcurrent_trip", "heatsink_warning"})
    OVERCURRENT = 0x20  # 16-90 alarm word bit 5
    POWER_CARD_TEMP = 0x2  # 16-92 warning word bit 1

    def __init__(self, asset: str, rated_current: float = 15.0, seed: int | None = None):
        super().__init__(asset, seed)
        self.rated = rated_current
        self.step(0.0, 0.0)

    def step(self, t: float, dt: float) -> None:
        v = self.values
        v["dc_link_voltage"] = round(540.0 + self.noise(2.0))  # 1.35 x 400 V mains, rectified
        if "overcurrent_trip" in self.faults:
            # A trip stops the motor: the output is off, the alarm stays until someone resets it.
            v.update(running=0, tripped=1, drive_ready=0, output_frequency=0.0, motor_voltage=0.0)
            v.update(motor_current=0.0, alarm_word=self.OVERCURRENT, heatsink_temp=30.0)
        else:
            freq = 30.0 + 20.0 * daily_load(t) / 0.75
            load = min(1.0, freq / 50.0)
            v.update(running=1, tripped=0, drive_ready=1, alarm_word=0)
            v["output_frequency"] = round(min(50.0, freq + self.noise(0.05)), 1)
            v["motor_voltage"] = round(400.0 * load, 1)  # V/f: voltage in proportion to frequency
            v["motor_current"] = round(self.rated * (0.35 + 0.65 * load**2) + self.noise(0.05), 2)
            v["heatsink_temp"] = round(35.0 + 20.0 * load**3)
        hot = "heatsink_warning" in self.faults
        if hot:
            v["heatsink_temp"] = 92.0
        v["warning"] = 1 if hot else 0
        v["warning_word"] = self.POWER_CARD_TEMP if hot else 0
        v["trip_lock"] = 0


class WaterMeter(Equipment):
    """An ultrasonic meter on a building's water main: daytime demand, almost nothing at night."""

    FAULTS = frozenset({"leak", "no_signal"})

    def __init__(self, asset: str, peak_m3h: float = 12.0, leak_m3h: float = 0.6, seed: int | None = None):
        super().__init__(asset, seed)
        self.peak, self.leak = peak_m3h, leak_m3h
        self.total = 52_000.0
        self.values.update(reverse_volume=0.0, net_volume=0.0, poor_signal=0, pipe_empty=0, hardware_fault=0)
        self.step(0.0, 0.0)

    def step(self, t: float, dt: float) -> None:
        v = self.values
        # daily_load bottoms out at 0.25 at night: above it is people using water; 0.02 m3/h is
        # the legitimate night use left (a few flushes, a running humidifier).
        use = self.peak * max(0.0, daily_load(t) - 0.25) / 0.7 + 0.02 + abs(self.noise(0.005))
        flow = use + (self.leak if "leak" in self.faults else 0.0)
        if "no_signal" in self.faults:  # transducers lost contact: the meter shows nothing
            flow = 0.0
        else:
            self.total += flow * dt / 3600.0
        v["no_signal"] = 1 if "no_signal" in self.faults else 0
        v["flow_rate"] = round(flow, 4)
        v["velocity"] = round(flow / 3600.0 / (math.pi * 0.05**2 / 4), 4)  # DN50 main
        v["total_volume"] = float(math.floor(self.total))
        v["total_volume_fraction"] = round(self.total - math.floor(self.total), 4)
        v["net_volume"] = v["total_volume"] - v["reverse_volume"]


MODELS["drive"] = Drive
MODELS["water_meter"] = WaterMeter


def site_models(assets: Iterable[Asset]) -> dict[str, Equipment]:
    """One model per asset, shaped by its device facts (a single-phase meter, say)."""
    return {a.id: MODELS[a.type].for_asset(a.id, dict(a.params)) for a in assets}
