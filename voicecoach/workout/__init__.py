"""The workout: plans and programme, the state machine, the cue engine and the coach."""
