"""The device: the one loop that listens, coaches and speaks, the duplex gate, the belt
controller, session drivers and the enrollment dialogue."""
