"""Headers a serial driver adds to a raw.device message, beyond ``bus.headers``' own.

They carry what the raw bytes alone cannot tell the normalizer on replay: which device and
protocol, and the device clock as the driver knew it when the frame arrived.
"""

DEVICE_ID = "device-id"
PROTOCOL = "device-protocol"
# ISO 8601 device time at receipt, for protocols whose frames carry no time (Medibus).
DEVICE_TIME = "device-time"
# IntelliVue: "<relative ticks>@<ISO absolute time>" from the MDS create event report.
TIME_ANCHOR = "device-time-anchor"
# Minutes east of UTC the device clock is set to (ASTM, Datex times carry no zone).
UTC_OFFSET = "device-utc-offset"
# The identifier system of the patient ids the device reports itself (an analyzer's ASTM P
# record), from its registration; absent: a Patient identifier of any system matches.
PATIENT_ID_SYSTEM = "device-patient-id-system"
