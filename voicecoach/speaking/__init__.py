"""Speaking: text to speech (pyttsx3 or espeak-ng in a worker), rendering, the speaker queue."""
