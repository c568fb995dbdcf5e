"""Imported by the fork server alone, as LocalProcesses preloads it (nothing else imports it): the
fork server ends with the learner that started it, and its actors with it (actors/local.py:
`killed_with_parent`), even while one of them is stopped. Like its actors it ignores the SIGINT
and SIGTERM sent to the whole group (Ctrl-C, `timeout`, systemd): the learner decides when to stop,
and it would take every actor with it."""
import signal

from actors.local import killed_with_parent

for _signal in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_signal, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # blocked until now: local.py
killed_with_parent()
