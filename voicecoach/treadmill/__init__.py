"""Driving a treadmill over Bluetooth FTMS: codec, link protocol, bleak client, simulator (no coach
inside: the belt controller that follows the workout is voicecoach.device.belt)."""
