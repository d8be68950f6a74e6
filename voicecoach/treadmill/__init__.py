"""Driving a treadmill over Bluetooth FTMS: codec, link, the coach's belt controller."""
