"""Imported by the fork server alone, as LocalProcesses preloads it (nothing else imports it): the
fork server ends with the learner that started it, and its actors with it (actors/local.py:
`killed_with_parent`), even while one of them is stopped."""
from actors.local import killed_with_parent

killed_with_parent()
