"""Listening: the recogniser protocol, the engine table and the engines (spotter, vosk, pocketsphinx)."""
