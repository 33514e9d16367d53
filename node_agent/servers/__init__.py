"""The servers this node runs, and each one's life: registry, state, power, exits, crashes,
install (DESIGN.md "Containers (agent)": restored after a restart, crashes restarted with a
guard against restart loops).

registry.py  :class:`ServerRegistry`, what the routes call: create, delete, look up, spec and
             disk updates; loads the records and restores each server at the agent's start
watch.py     :class:`ContainerWatch`: follows dockerd's events (and resyncs) for the registry
server.py    :class:`ManagedServer`: one server's record, volume, console, lock and tasks,
             its game container, status and console commands
state.py     :class:`ServerStateMachine`: the state and its one writer; each change is one
             ``StateEvent`` on the node's event stream and one console ``status`` line
power.py     start, stop, restart, kill; the power state brought back after an agent start
done.py      :class:`DoneWatch`: a start stays ``starting`` until the game prints a done marker
exits.py     the game container started or exited: each exit judged once, offline or crash
crash.py     :class:`CrashPolicy` (restart, or not within the crash-loop window) and the crash
             handled: state, console notice, ``CrashEvent``, restart
install.py   the install script in its one-off container, at create and on reinstall
records.py   :class:`ServerRecord` on disk (spec, install phase, desired power), written atomically

Host set-up (``stellar-agent install``) is apart, in :mod:`node_agent.provision`.
"""
