"""The workout state machine, declared as data: states, one transition table, and a builder."""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any

from transitions import Machine

_LOGGER = logging.getLogger(__name__)


class State(Enum):
    """Where the session is. Values are the names used in grammars and events."""

    IDLE = "idle"
    BRIEFING = "briefing"
    WARMUP = "warmup"
    BACKWARD = "backward"
    RECOVERY = "recovery"
    PAUSED = "paused"
    COOLDOWN = "cooldown"
    FINISHED = "finished"
    STOPPED = "stopped"


#: States in which the belt is moving under the coach's guidance.
ACTIVE = (State.WARMUP, State.BACKWARD, State.RECOVERY, State.COOLDOWN)
#: States in which nothing is running: stop there is acknowledged and changes nothing.
AT_REST = (State.IDLE, State.FINISHED, State.STOPPED)
#: Plan phase kind -> the state that runs it.
PHASE_STATE = {"warmup": State.WARMUP, "backward": State.BACKWARD,
               "recovery": State.RECOVERY, "cooldown": State.COOLDOWN}

ALL = list(State)
_EVERYWHERE = ["repeat", "louder", "quieter", "help", "time_left"]


def _internal(trigger: str, source: Any, after: str, **extra: Any) -> dict[str, Any]:
    return {"trigger": trigger, "source": source, "dest": None, "after": after, **extra}


def _build_table() -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = [
        # starting and the safety briefing
        {"trigger": "start", "source": list(AT_REST), "dest": State.BRIEFING},
        _internal("yes", State.BRIEFING, "briefing_yes"),
        _internal("no", State.BRIEFING, "briefing_no"),
        # moving through the plan: one rule per phase kind, chosen by the next phase
        *[{"trigger": "advance", "source": [State.BRIEFING, *ACTIVE], "dest": state,
           "conditions": f"next_is_{kind}", "after": "begin_phase"}
          for kind, state in PHASE_STATE.items()],
        {"trigger": "advance", "source": [State.BRIEFING, *ACTIVE], "dest": State.FINISHED,
         "conditions": "plan_done"},
        # pause and resume to the state that was paused
        {"trigger": "pause", "source": list(ACTIVE), "dest": State.PAUSED,
         "before": "remember_paused_state"},
        *[{"trigger": "resume", "source": State.PAUSED, "dest": state,
           "conditions": f"paused_from_{state.value}"} for state in ACTIVE],
        # stop: from everywhere, always, into a safe state
        {"trigger": "stop", "source": [State.BRIEFING, State.PAUSED, *ACTIVE],
         "dest": State.STOPPED},
        _internal("stop", list(AT_REST), "stop_at_rest"),
        # the microphone or the process going away
        {"trigger": "lost_input", "source": list(ACTIVE), "dest": State.PAUSED,
         "before": "remember_paused_state"},
        {"trigger": "reset", "source": [State.FINISHED, State.STOPPED], "dest": State.IDLE},
        # targets: the change if within limits, else a refusal said aloud
        *[rule for trigger in ("faster", "slower", "incline_up", "incline_down") for rule in (
            _internal(trigger, list(ACTIVE), f"apply_{trigger}", conditions=f"can_{trigger}"),
            _internal(trigger, list(ACTIVE), f"refuse_{trigger}", unless=f"can_{trigger}"),
        )],
        # answers and reports while walking
        _internal("yes", [*ACTIVE, State.PAUSED], "answer_yes"),
        _internal("no", [*ACTIVE, State.PAUSED], "answer_no"),
        _internal("good", list(ACTIVE), "answer_good"),
        _internal("pain", [*ACTIVE, State.PAUSED], "report_pain"),
        # things that work everywhere
        *[_internal(trigger, ALL, f"say_{trigger}") for trigger in _EVERYWHERE],
    ]
    return table


TRANSITIONS: list[dict[str, Any]] = _build_table()
#: Every trigger a command can fire (all commands of the grammar) plus the internal ones.
TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(t["trigger"] for t in TRANSITIONS))


def build_machine(model: object, *, graph: bool = False,
                  table: list[dict[str, Any]] | None = None) -> Machine:
    """Attach the workout machine to ``model`` (queued, so triggers raised in callbacks run in
    order). With ``graph=True`` a mermaid-capable GraphMachine is built from the same table."""
    kwargs: dict[str, Any] = dict(
        model=model, states=State, transitions=TRANSITIONS if table is None else table,
        initial=State.IDLE,
        queued=True, auto_transitions=False, send_event=True,
    )
    if graph:
        from transitions.extensions.diagrams import GraphMachine

        return GraphMachine(graph_engine="mermaid", show_conditions=True, **kwargs)
    machine = Machine(**kwargs)
    for state in State:  # the model hears of every change first, before on_enter_<STATE>
        machine.get_state(state.name).on_enter.insert(0, "state_entered")
    return machine


def mermaid(include_internal: bool = False) -> str:
    """The real machine rendered as a mermaid state diagram."""

    class _Model:
        # Only the guards answer (they are never run here). Anything else is missing, so
        # transitions binds its triggers to the model instead of warning that the model
        # "overrides" each one (25 to 51 warning lines on stderr).
        def __getattr__(self, name: str) -> Any:
            if name.startswith(("next_is_", "can_", "paused_from_", "plan_done")):
                return lambda *a, **k: True
            raise AttributeError(name)

    model = _Model()
    table = [t for t in TRANSITIONS if include_internal or t["dest"] is not None]
    build_machine(model, graph=True, table=table)
    text = model.get_graph().draw(None)  # type: ignore[attr-defined]
    keep = [line for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith(("Class ", "classDef"))]
    return "\n".join(keep) + "\n"
