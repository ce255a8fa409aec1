"""Built-in device profiles: five microcontroller classes and the host, one YAML file each in ``profiles/``.

The ``host`` profile is the calibrated one when ``ecgbench devices calibrate``
has written ``$ECGBENCH_HOME/devices/host.yaml`` (or ``$ECGBENCH_HOST_PROFILE``
names a file), else ``profiles/host.yaml``'s documented, uncalibrated defaults.
"""

from __future__ import annotations

from pathlib import Path

from ecgbench import hookimpl
from ecgbench.kinds.device import DeviceProfile, calibrated_host_profile_path, load_profile
from ecgbench.errors import ConfigError

PROFILE_DIR = Path(__file__).parent / "profiles"
HOST = "host"


def host_profile() -> DeviceProfile:
    """The calibrated host profile if one exists, else the uncalibrated defaults."""
    path = calibrated_host_profile_path()
    if path is None:
        return load_profile(PROFILE_DIR / f"{HOST}.yaml")
    profile = load_profile(path)
    if profile.name != HOST:
        raise ConfigError(f"{path}: a host profile must be named '{HOST}', not '{profile.name}'; fix its name field or rerun `ecgbench devices calibrate`")
    return profile


def builtin_profiles() -> list[DeviceProfile]:
    """Every built-in profile, the host last."""
    profiles = [load_profile(path) for path in sorted(PROFILE_DIR.glob("*.yaml")) if path.stem != HOST]
    return profiles + [host_profile()]


@hookimpl
def ecgbench_register_devices(register):
    for profile in builtin_profiles():
        register(profile)
