"""Audio in and out: sources that yield chunks, sinks that play or record speech."""
