"""Speech in and out: command recognisers and text to speech."""
